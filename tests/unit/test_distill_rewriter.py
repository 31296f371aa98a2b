"""Rewriter distillation: a tiny trained teacher into a smaller student through the DeepSpeed core."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minielm.config import DistillConfig, RewriterStudentConfig
from minielm.distill.losses import token_kl_loss
from minielm.distill.rewriter_student import (
    DistillError,
    TokenizerMismatch,
    distill_rewriter,
    layer_map,
    student_config,
)
from minielm.models.rewrite_guard import RewriteGuard
from minielm.models.rewriter import CausalRewriter, collate_rewrite_examples, encode_rewrite_example
from tests.unit.distill_fixtures import COLORS, TYPES

ABBREVIATIONS = {"black": "blk", "white": "wht", "green": "grn", "blue": "blu", "red": "rd"}


def toy_pairs() -> list[tuple[str, str]]:
    """(noisy query, rewrite): abbreviated colours and a joined word to split."""
    pairs = []
    for colour in COLORS:
        for kind in TYPES:
            pairs.append((f"{ABBREVIATIONS[colour]} {kind}", f"{colour} {kind}"))
            pairs.append((f"{colour}{kind}", f"{colour} {kind}"))
    return pairs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _untrained_teacher() -> CausalRewriter:
    from transformers import AutoModelForCausalLM

    from minielm.models.backbones import tiny_llama_config
    from minielm.models.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([t for p in toy_pairs() for t in p] * 3, vocab_size=320)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        tiny_llama_config(tokenizer, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=128)
    )
    return CausalRewriter(model.eval(), tokenizer, max_new_tokens=12)


@pytest.fixture(scope="module")
def untrained_teacher() -> CausalRewriter:
    return _untrained_teacher()


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> CausalRewriter:
    """The 4-layer, 64-wide decoder trained for a few seconds on the toy rewrites."""
    from minielm.models.rewriter import answer_token_loss
    from minielm.training.config import TrainingConfig
    from minielm.training.engine import train

    torch.set_num_threads(1)
    teacher = _untrained_teacher()
    model, tokenizer = teacher.model, teacher.tokenizer
    pairs = toy_pairs()
    encoded = [encode_rewrite_example(tokenizer, q, r, 48, 12) for q, r in pairs]
    config = TrainingConfig(
        max_steps=100, micro_batch_size=16, learning_rate=5e-3, warmup_steps=10, checkpoint_every=0, progress=False
    )
    train(
        model,
        answer_token_loss,
        config,
        tmp_path_factory.mktemp("teacher"),
        dataset=encoded,
        collate_fn=lambda b: collate_rewrite_examples(b, tokenizer.pad_token_id),
        export=False,
    )
    return CausalRewriter(model.eval(), tokenizer, max_new_tokens=12)


def test_layer_map_spreads_student_layers_over_the_teacher():
    assert layer_map(30, 4) == [0, 10, 19, 29]
    assert layer_map(4, 2) == [0, 3]
    assert layer_map(4, 1) == [3]
    with pytest.raises(DistillError, match=r"rewriter\.num_layers"):
        layer_map(4, 5)


def _kl_and_agreement(student, teacher, queries) -> tuple[float, float]:
    tok = teacher.tokenizer
    targets = [r[0] for r in teacher.rewrite(queries)]
    batch = collate_rewrite_examples(
        [encode_rewrite_example(tok, q, r, 48, 12) for q, r in zip(queries, targets)], tok.pad_token_id
    )
    with torch.no_grad():
        s = student.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = teacher.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["labels"][:, 1:] != -100
    agree = (s[:, :-1].argmax(-1) == t[:, :-1].argmax(-1))[mask].float().mean().item()
    return token_kl_loss(s, t, batch["labels"], 1.0).item(), agree


@pytest.mark.slow
def test_tiny_teacher_distilled_into_smaller_student_moves_toward_the_teacher(tiny_teacher, tmp_path):
    pairs = toy_pairs()
    held_out = [q for q, _ in pairs[::7]]
    unlabelled = [q for q, _ in pairs]
    config = DistillConfig(
        rewriter=RewriterStudentConfig(
            num_layers=2,
            hidden_size=32,
            batch_size=16,
            learning_rate=5e-3,
            seq_kd_weight=0.5,
            kl_temperature=2.0,
            max_new_tokens=12,
        )
    )
    from minielm.distill.rewriter_student import build_student

    untrained, info = build_student(tiny_teacher.model, config)
    assert info["layer_map"] == [0, 3]
    assert info["student_parameters"] < info["teacher_parameters"] / 2
    assert info["init"]["sliced"] > 0
    before = _kl_and_agreement(CausalRewriter(untrained, tiny_teacher.tokenizer), tiny_teacher, held_out)

    guard = RewriteGuard.from_texts([r for _, r in pairs], pairs)
    tiny_teacher.guard = guard
    try:
        result = distill_rewriter(tiny_teacher, unlabelled, config, work_dir=tmp_path / "work", steps=80)
    finally:
        tiny_teacher.guard = None
    assert result.student.guard is guard, "the student serves behind its teacher's intent guard"
    assert np.mean(result.losses[-10:]) < 0.5 * np.mean(result.losses[:10])
    assert {"seq_kd_ce", "token_kl"} <= set(result.parts[0])
    after = _kl_and_agreement(result.student, tiny_teacher, held_out)
    assert after[0] < 0.5 * before[0], (before, after)
    assert after[1] > before[1], (before, after)
    assert result.student.model.config.num_hidden_layers == 2
    assert result.student.model.config.hidden_size == 32

    result.student.version = "v-student"
    saved = result.student.save(tmp_path / "student")
    reloaded = CausalRewriter.load(saved)
    assert reloaded.guard == guard
    assert reloaded.rewrite(held_out[:3]) == result.student.rewrite(held_out[:3])


@pytest.mark.slow
def test_freeze_embeddings_keeps_the_teachers_embeddings_and_trains_the_layers(untrained_teacher, tmp_path):
    config = DistillConfig(
        rewriter=RewriterStudentConfig(num_layers=2, batch_size=4, max_new_tokens=4, freeze_embeddings=True)
    )
    result = distill_rewriter(
        untrained_teacher, [q for q, _ in toy_pairs()[:8]], config, work_dir=tmp_path / "work", steps=2
    )

    student, teacher = result.student.model, untrained_teacher.model
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    assert not torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[0].mlp.up_proj.weight)


def test_mismatched_tokenizer_fails_before_training(untrained_teacher, tmp_path):
    from minielm.models.tokenizer import train_bpe_tokenizer

    other = train_bpe_tokenizer(["completely different words for another tokenizer"] * 5, vocab_size=300)
    with pytest.raises(TokenizerMismatch, match="does not match the teacher's"):
        distill_rewriter(untrained_teacher, ["blk shoe"], DistillConfig(), work_dir=tmp_path, student_tokenizer=other)
    assert not (tmp_path / "checkpoints").exists()


def test_teacher_checkpoint_smaller_than_its_tokenizer_fails(untrained_teacher, tmp_path):
    from minielm.models.tokenizer import train_bpe_tokenizer

    bigger = train_bpe_tokenizer(
        [t for p in toy_pairs() for t in p] * 3 + ["many more words here"] * 50, vocab_size=600
    )
    mismatched = CausalRewriter(untrained_teacher.model, bigger)
    if len(bigger) <= untrained_teacher.model.config.vocab_size:
        pytest.skip("the second tokenizer did not grow beyond the teacher's vocabulary")
    with pytest.raises(TokenizerMismatch, match="does not belong to this tokenizer"):
        distill_rewriter(mismatched, ["blk shoe"], DistillConfig(), work_dir=tmp_path)


def test_bad_student_shapes_and_empty_queries_fail_clearly(untrained_teacher, tmp_path):
    with pytest.raises(DistillError, match="query list is empty"):
        distill_rewriter(untrained_teacher, ["", "  "], DistillConfig(), work_dir=tmp_path)
    with pytest.raises(DistillError, match="must not exceed the teacher"):
        student_config(
            untrained_teacher.model.config, DistillConfig(rewriter=RewriterStudentConfig(num_layers=2, hidden_size=128))
        )
    with pytest.raises(DistillError, match=r"rewriter\.num_layers"):
        student_config(untrained_teacher.model.config, DistillConfig(rewriter=RewriterStudentConfig(num_layers=9)))
