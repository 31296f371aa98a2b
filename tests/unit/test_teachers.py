"""Teacher trainers on tiny models: data checks before training, a few real DeepSpeed steps, export
that reloads with transformers, and the QueryRewriter / RelevanceScorer APIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from minielm.data.esci import EsciData
from minielm.data.synthetic import generate_dataset
from minielm.models.interfaces import QueryRewriter, RelevanceScorer
from minielm.models.prompts import extract_rewrite, format_rewrite_prompt
from minielm.models.relevance_teacher import RelevanceTeacher
from minielm.models.rewriter import CausalRewriter, encode_rewrite_example
from minielm.models.tokenizer import train_bpe_tokenizer
from minielm.teachers.config import TinyBackboneConfig, tiny_relevance_config, tiny_rewriter_config
from minielm.teachers.data import TeacherDataError
from minielm.teachers.relevance import train_relevance_teacher
from minielm.teachers.rewriter import train_rewriter_teacher
from minielm.training.config import TrainingConfig

SMALL = TinyBackboneConfig(
    hidden_size=48, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=96, vocab_size=400
)


def quick_training(steps: int, lr: float = 1.5e-2) -> TrainingConfig:
    return TrainingConfig(
        max_steps=steps,
        micro_batch_size=16,
        learning_rate=lr,
        warmup_steps=1,
        checkpoint_every=0,
        progress=False,
        cpu_threads=1,
    )


@pytest.fixture(scope="module")
def dataset() -> EsciData:
    return generate_dataset(n_products=150, n_queries=60, seed=3)


def test_rewriter_trains_exports_and_rewrites(dataset, tmp_path):
    config = tiny_rewriter_config(tiny=SMALL, training=quick_training(10), max_eval_queries=6)
    run = train_rewriter_teacher(dataset, tmp_path, config)

    assert run.train["steps"] == 10 and run.train["final_loss"] < 0.8 * run.train["first_loss"]
    for key in ("raw_relevant_per_query", "teacher_relevant_per_query", "oracle_relevant_per_query", "exact_match"):
        assert key in run.metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["n_queries"] == run.metrics["n_queries"] <= 6
    metadata = json.loads((run.model_dir / "metadata.json").read_text())
    assert metadata["model_class"] == "minielm.models.rewriter:CausalRewriter" and metadata["data_hash"]

    rewriter = CausalRewriter.load(run.model_dir)
    plain = AutoModelForCausalLM.from_pretrained(run.model_dir)
    probe = rewriter.tokenizer(format_rewrite_prompt("red tee"), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(plain(probe).logits, rewriter.model(probe).logits)
    assert isinstance(rewriter, QueryRewriter)
    greedy = rewriter.rewrite(["red tee", "wireles hedphones", "nonstick fyring pan"])
    assert len(greedy) == 3 and all(len(options) == 1 and options[0] for options in greedy)
    assert greedy == rewriter.rewrite(["red tee", "wireles hedphones", "nonstick fyring pan"])
    torch.manual_seed(0)
    sampled = rewriter.rewrite(["red tee", "offiec chair"], num_return=3, do_sample=True)
    assert [len(options) for options in sampled] == [3, 3]
    beams = rewriter.rewrite(["red tee"], num_return=2)
    assert len(beams[0]) == 2

    scored = rewriter.rewrite_with_confidence(["red tee", "offiec chair"])
    assert all(0.0 <= confidence <= 1.0 for _, confidence in scored)
    rewriter.min_confidence = 1.01
    assert rewriter.rewrite(["red  tee", "offiec chair"]) == [["red tee"], ["offiec chair"]]
    rewriter.min_confidence = 0.0
    assert rewriter.guard is not None and rewriter.guard.vocabulary, "the guard is saved with the model"
    guarded = [rewriter.guard.allows(q, text) for q, (text, _) in zip(["red tee", "offiec chair"], scored)]
    assert rewriter.rewrite(["red tee", "offiec chair"]) == [
        [text if ok else q] for q, (text, _), ok in zip(["red tee", "offiec chair"], scored, guarded)
    ]
    rewriter.guard = None
    assert rewriter.rewrite(["red tee", "offiec chair"]) == [[text] for text, _ in scored]
    assert 0.0 <= run.metrics["min_confidence"] <= 1.01 and 0.0 <= run.metrics["rewrite_rate"] <= 1.0
    assert run.metrics["abstains"] == (run.metrics["min_confidence"] > 1.0)
    assert run.metrics["harm_rate"] is None or 0.0 <= run.metrics["harm_rate"] <= 1.0
    rewriter.min_confidence = 0.5
    assert CausalRewriter.load(rewriter.save(tmp_path / "saved")).min_confidence == 0.5


def test_rewriter_parameters_change(dataset, tmp_path):
    config = tiny_rewriter_config(tiny=SMALL, training=quick_training(2), max_eval_queries=2)
    run = train_rewriter_teacher(dataset, tmp_path, config)
    tokenizer = CausalRewriter.load(run.model_dir).tokenizer
    torch.manual_seed(config.training.seed)
    from minielm.models.backbones import causal_lm

    initial = causal_lm("tiny", tokenizer, ".cache/models", SMALL).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(run.model_dir).state_dict()
    assert all(not torch.equal(initial[k], trained[k]) for k in trained)


def test_relevance_teacher_trains_and_scores(dataset, tmp_path):
    config = tiny_relevance_config(tiny=SMALL, training=quick_training(8), max_length=48, max_eval_examples=120)
    run = train_relevance_teacher(dataset, tmp_path, config)

    assert run.train["final_loss"] < run.train["first_loss"]
    for key in ("accuracy", "macro_f1", "ndcg@10", "log_loss", "majority_accuracy"):
        assert 0 <= run.metrics[key] <= (10 if key == "log_loss" else 1)
    teacher = RelevanceTeacher.load(run.model_dir)
    assert isinstance(teacher, RelevanceScorer)
    queries = ["red tee", "office chair", "frying pan"]
    texts = ["Red T-Shirt | cotton", "Office Chair by Dwellio | black", "Blue Yoga Mat"]
    probabilities = teacher.predict_proba(queries, texts)
    assert probabilities.shape == (3, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    scores = teacher.score(queries, texts)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert np.allclose(teacher.predict_proba(queries[:1], texts[:1]), probabilities[:1], atol=1e-5)
    plain = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    assert plain.config.id2label == {0: "E", 1: "S", 2: "C", 3: "I"}
    with pytest.raises(ValueError, match="product texts"):
        teacher.predict_proba(queries, texts[:2])


def _broken(dataset: EsciData, **changes) -> EsciData:
    examples = dataset.examples.copy()
    for column, value in changes.items():
        if value is None:
            examples = examples.drop(columns=[column])
        else:
            examples[column] = value(examples) if callable(value) else value
    return EsciData(examples=examples, products=dataset.products)


@pytest.mark.parametrize("trainer", ["rewriter", "relevance"])
@pytest.mark.parametrize(
    "changes,message",
    [
        ({"query": None}, "missing column"),
        ({"esci_label": lambda e: e["esci_label"].where(e.index % 7 != 0, "X")}, "outside"),
        ({"split": lambda e: e["split"].replace("test", "validation")}, "split 'test' is empty"),
    ],
)
def test_bad_data_fails_before_training(dataset, tmp_path, trainer, changes, message):
    bad = _broken(dataset, **changes)
    train_fn, config = (
        (train_rewriter_teacher, tiny_rewriter_config(tiny=SMALL))
        if trainer == "rewriter"
        else (train_relevance_teacher, tiny_relevance_config(tiny=SMALL))
    )
    with pytest.raises(TeacherDataError, match=message):
        train_fn(bad, tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_rewriter_needs_canonical_rewrites(dataset, tmp_path):
    with pytest.raises(TeacherDataError, match="canonical_query"):
        train_rewriter_teacher(_broken(dataset, canonical_query=None), tmp_path / "run", tiny_rewriter_config())


def test_relevance_needs_products_in_the_catalog(dataset, tmp_path):
    products = dataset.products.iloc[10:].reset_index(drop=True)
    with pytest.raises(TeacherDataError, match="not in the products file"):
        train_relevance_teacher(EsciData(dataset.examples, products), tmp_path / "run", tiny_relevance_config())


def test_data_dir_with_bad_labels_names_the_column(dataset, tmp_path):
    from minielm.data.esci import EXAMPLES_FILE, write_esci

    write_esci(dataset, tmp_path / "data")
    frame = dataset.examples.copy()
    frame.loc[0, "esci_label"] = "relevant"
    frame.to_parquet(tmp_path / "data" / EXAMPLES_FILE, index=False)
    with pytest.raises(TeacherDataError, match="esci_label"):
        train_relevance_teacher(tmp_path / "data", tmp_path / "run", tiny_relevance_config())


def test_prompt_format_and_answer_only_labels():
    tokenizer = train_bpe_tokenizer(["red t-shirt cotton", "red tee", "office chair"] * 5, vocab_size=320)
    example = encode_rewrite_example(tokenizer, "red  tee ", "red t-shirt", max_prompt_tokens=64, max_answer_tokens=16)
    prompt_len = sum(1 for label in example["labels"] if label == -100)
    assert example["input_ids"][:prompt_len][0] == tokenizer.bos_token_id
    answer = tokenizer.decode(example["labels"][prompt_len:], skip_special_tokens=True)
    assert answer.strip() == "red t-shirt" and example["labels"][-1] == tokenizer.eos_token_id
    assert format_rewrite_prompt("red  tee ").endswith("Query: red tee\nRewrite:")
    assert extract_rewrite(" red t-shirt\nQuery: x") == "red t-shirt" and extract_rewrite("  ") == ""
