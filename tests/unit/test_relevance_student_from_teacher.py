"""A relevance student that starts as the teacher (``distill.relevance.teacher_layers``): the copied weights
equal the teacher's, all layers reproduce the teacher, training moves the student and never the teacher,
and the saved student reloads with its pooling and prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from minielm.config import DistillConfig, RelevanceStudentConfig
from minielm.distill.augment import build_triples, label_triples
from minielm.distill.relevance_student import distill_relevance, new_relevance_student
from minielm.errors import InputError
from minielm.models.backbones import sequence_classifier
from minielm.models.cross_encoder import CrossEncoderError, CrossEncoderScorer
from minielm.models.relevance_teacher import RelevanceTeacher
from minielm.models.tokenizer import train_bpe_tokenizer
from minielm.teachers.config import TinyBackboneConfig
from tests.unit.distill_fixtures import OverlapTeacher, overlap_retriever, product_texts, tiny_catalog

SHAPE = TinyBackboneConfig(
    hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=64, vocab_size=400
)
QUERIES = ["red shoe", "blue lamp", "green chair", "white kettle"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_teacher() -> RelevanceTeacher:
    texts = list(product_texts(tiny_catalog()).values())
    tokenizer = train_bpe_tokenizer(texts + QUERIES, vocab_size=SHAPE.vocab_size, min_frequency=1)
    torch.manual_seed(0)
    model = sequence_classifier("tiny", tokenizer, ".cache/models", SHAPE)
    return RelevanceTeacher(model, tokenizer, version="tiny-teacher", max_length=32)


def _pairs():
    texts = list(product_texts(tiny_catalog()).values())
    return [q for q in QUERIES for _ in texts[:6]], [t for _ in QUERIES for t in texts[:6]]


def test_copied_weights_equal_the_teachers_chosen_layers_norm_and_head():
    teacher = tiny_teacher()
    student = CrossEncoderScorer.from_teacher(teacher, [0, 2])
    decoder, source = student.model.encoder, teacher.model.model
    assert len(decoder.layers) == 2 and decoder.config.num_hidden_layers == 2
    for kept, original in ((0, 0), (1, 2)):
        pairs = zip(decoder.layers[kept].state_dict().items(), source.layers[original].state_dict().items())
        assert all(k1 == k2 and torch.equal(v1, v2) for (k1, v1), (k2, v2) in pairs)
    assert torch.equal(decoder.embed_tokens.weight, source.embed_tokens.weight)
    assert torch.equal(decoder.norm.weight, source.norm.weight)
    assert torch.equal(student.model.head.weight, teacher.model.score.weight)
    assert torch.count_nonzero(student.model.head.bias) == 0
    assert (student.input_format, student.model.pooling, student.max_length) == ("relevance_prompt", "last", 32)
    # The teacher keeps its depth and its own weights (a copy, not a view).
    assert len(teacher.model.model.layers) == 3 and teacher.model.config.num_hidden_layers == 3
    assert decoder.layers[0].mlp.up_proj.weight.data_ptr() != source.layers[0].mlp.up_proj.weight.data_ptr()


def test_a_student_with_every_layer_scores_exactly_as_the_teacher():
    teacher = tiny_teacher()
    student = CrossEncoderScorer.from_teacher(teacher, [0, 1, 2])
    queries, texts = _pairs()
    np.testing.assert_allclose(student.predict_proba(queries, texts), teacher.predict_proba(queries, texts), atol=1e-5)


def test_training_moves_the_student_and_leaves_the_teacher_and_reloads(tmp_path):
    teacher = tiny_teacher()
    teacher_before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    student = CrossEncoderScorer.from_teacher(teacher, [0, 2])
    products = tiny_catalog()
    texts = product_texts(products)
    triples = build_triples(QUERIES, products, overlap_retriever(products), triples_per_query=6, retrieval_depth=8)
    labelled = label_triples(triples, texts, OverlapTeacher())
    before = [p.detach().clone() for p in student.model.parameters()]
    config = DistillConfig(relevance=RelevanceStudentConfig(batch_size=4, learning_rate=1e-2, teacher_layers=[0, 2]))
    result = distill_relevance(student, labelled, texts, config, work_dir=tmp_path / "work", steps=3)
    assert result.steps == 3
    changed = [not torch.equal(a, b) for a, b in zip(before, student.model.parameters())]
    assert all(changed)
    assert all(torch.equal(v, teacher.model.state_dict()[k]) for k, v in teacher_before.items())

    student.save(tmp_path / "student")
    loaded = CrossEncoderScorer.load(tmp_path / "student")
    assert (loaded.input_format, loaded.model.pooling) == ("relevance_prompt", "last")
    queries, pair_texts = _pairs()
    np.testing.assert_allclose(
        loaded.predict_proba(queries, pair_texts), student.predict_proba(queries, pair_texts), atol=1e-5
    )


def test_new_student_from_the_config_needs_the_teacher_dir(tmp_path):
    config = RelevanceStudentConfig(teacher_layers=[1])
    with pytest.raises(InputError, match="teacher_layers: the student starts from the relevance teacher"):
        new_relevance_student(config, None)
    tiny_teacher().save(tmp_path / "teacher")
    student = new_relevance_student(config.model_copy(update={"max_length": 24}), tmp_path / "teacher")
    assert len(student.model.encoder.layers) == 1 and student.max_length == 24


def test_bad_layer_choices_fail_clearly():
    teacher = tiny_teacher()
    with pytest.raises(CrossEncoderError, match=r"teacher's 3 layers \(0..2\), got \[0, 3\]"):
        CrossEncoderScorer.from_teacher(teacher, [0, 3])
    with pytest.raises(CrossEncoderError, match="got \\[2, 1\\]"):
        CrossEncoderScorer.from_teacher(teacher, [2, 1])
    with pytest.raises(ValidationError, match="distinct ascending layer indices"):
        RelevanceStudentConfig(teacher_layers=[1, 1])
    with pytest.raises(ValidationError, match="leave backbone and num_layers unset"):
        RelevanceStudentConfig(teacher_layers=[0], num_layers=2)
