"""The cascade rewriter: an LM that reads the phrase-table baseline's rewrite and falls back to it.

One serving rule for both generation backends (Hugging Face and CTranslate2), the front end saved with the
weights and loaded by the serving loader, the teacher trained on out-of-fold front-end rewrites, the
student inheriting the front end, and calibration that compares against the front end, not the raw query.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from minielm.baseline import PhraseTableRewriter, out_of_fold_rewrites
from minielm.config import DistillConfig, RewriterStudentConfig, ServingConfig
from minielm.data.synthetic import generate_dataset
from minielm.errors import InputError
from minielm.models.backbones import tiny_llama_config
from minielm.models.ct2_rewriter import CTranslate2Rewriter, export_ctranslate2
from minielm.models.loading import load_model_dir
from minielm.models.rewrite_guard import RewriteGuard
from minielm.models.rewriter import FRONT_END_DIR, CausalRewriter
from minielm.models.tokenizer import train_bpe_tokenizer
from minielm.teachers.abstention import NEVER_REWRITE, calibrate_threshold
from minielm.teachers.config import RewriterTeacherConfig, TinyBackboneConfig, tiny_rewriter_config
from minielm.teachers.label_free import KEPT_PAIRS_FILE
from minielm.teachers.rewriter import train_rewriter, train_rewriter_teacher
from minielm.training.config import TrainingConfig

QUERIES = ["wireles hedphones blk", "red hat", "blue runing shoes"]
VOCABULARY = {"wireless": 5, "headphones": 5, "black": 3, "red": 3, "hat": 3, "blue": 2, "running": 2, "shoes": 2}


def front_end() -> PhraseTableRewriter:
    return PhraseTableRewriter({"blk": "black"}, VOCABULARY)


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = train_bpe_tokenizer(["wireless headphones black", "blue running shoes", "red hat"] * 50, 400)
    config = tiny_llama_config(
        tokenizer, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    )
    model = AutoModelForCausalLM.from_config(config)
    directory = tmp_path_factory.mktemp("cascade") / "model"
    CausalRewriter(model, tokenizer, version="v-cascade", max_new_tokens=6, front_end=front_end()).save(directory)
    export_ctranslate2(directory, quantization="float32")
    return directory


def test_front_end_is_saved_with_the_model_and_loaded_by_the_serving_loader(cascade_dir):
    assert json.loads((cascade_dir / "metadata.json").read_text())["front_end"] == "baseline"
    assert PhraseTableRewriter.is_saved_in(cascade_dir / FRONT_END_DIR)
    expected = ["wireless headphones black", "red hat", "blue running shoes"]
    hf = load_model_dir(cascade_dir, "rewriter", ServingConfig(generation_backend="huggingface"))
    fast = load_model_dir(cascade_dir, "rewriter", ServingConfig(generation_backend="ctranslate2"))
    assert isinstance(hf, CausalRewriter) and isinstance(fast, CTranslate2Rewriter)
    assert hf.lm_inputs(QUERIES) == fast.lm_inputs(QUERIES) == expected
    assert [t for t, _ in hf.rewrite_with_confidence(QUERIES)] == [t for t, _ in fast.rewrite_with_confidence(QUERIES)]


@pytest.mark.parametrize("backend", ["huggingface", "ctranslate2"])
def test_an_abstaining_lm_serves_the_front_ends_rewrite(cascade_dir, backend):
    rewriter = load_model_dir(cascade_dir, "rewriter", ServingConfig(generation_backend=backend))
    rewriter.min_confidence = NEVER_REWRITE
    assert rewriter.rewrite(QUERIES) == [["wireless headphones black"], ["red hat"], ["blue running shoes"]]


@pytest.mark.parametrize("backend", ["huggingface", "ctranslate2"])
def test_served_rewrites_follow_one_rule_on_both_backends(cascade_dir, backend):
    rewriter = load_model_dir(cascade_dir, "rewriter", ServingConfig(generation_backend=backend))
    rewriter.guard = RewriteGuard(frozenset(VOCABULARY))
    scored = rewriter.rewrite_with_confidence(QUERIES)
    fallbacks = rewriter.lm_inputs(QUERIES)
    expected = [
        [text if rewriter.guard.allows(query, text) else fallback]
        for query, fallback, (text, _) in zip(QUERIES, fallbacks, scored)
    ]
    assert rewriter.rewrite(QUERIES) == expected


def test_the_guard_judges_the_lm_against_the_original_query(cascade_dir):
    rewriter = CausalRewriter.load(cascade_dir)
    rewriter.guard = RewriteGuard(frozenset(VOCABULARY))
    fallback = "wireless headphones black"
    # dropping "blk" (the colour the shopper asked for) is rejected: the front end's rewrite stands
    assert rewriter.serve_choice("wireles hedphones blk", "wireless headphones", 1.0, fallback) == fallback
    assert rewriter.serve_choice("wireles hedphones blk", fallback, 1.0, "x") == fallback
    assert rewriter.serve_choice("wireles hedphones blk", fallback, 0.1, "y") == fallback
    rewriter.min_confidence = 0.5
    assert rewriter.serve_choice("wireles hedphones blk", fallback, 0.1, "y") == "y"
    assert rewriter.serve_choice("wireles  hedphones", "wireless headphones", 0.1) == "wireles hedphones"


def test_a_model_whose_front_end_is_missing_is_not_served(cascade_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(cascade_dir, broken)
    shutil.rmtree(broken / FRONT_END_DIR)
    with pytest.raises(InputError, match="front_end"):
        CausalRewriter.load(broken)
    metadata = json.loads((broken / "metadata.json").read_text())
    (broken / "metadata.json").write_text(json.dumps({**metadata, "front_end": "rules"}))
    with pytest.raises(InputError, match="front_end 'rules'"):
        CTranslate2Rewriter.load(broken)


def test_front_end_option_is_validated():
    assert RewriterTeacherConfig().front_end == "none"
    with pytest.raises(ValidationError, match="front_end"):
        RewriterTeacherConfig(front_end="rules")
    with pytest.raises(ValidationError, match="front_end_folds"):
        RewriterTeacherConfig(front_end_folds=0)


def test_out_of_fold_rewrites_do_not_use_the_querys_own_pair():
    examples = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(6)],
            "query": ["hdphns blk", "blk hat", "blk shoes", "blk hat x", "red hat", "blue shoes"],
            "canonical_query": ["headphones black", "black hat", "black shoes", "black hat x", "red hat", "blue shoes"],
        }
    )
    full = PhraseTableRewriter.fit(pd.DataFrame({"product_title": list(VOCABULARY)}), examples)
    assert full.rewrite_one("hdphns blk") == "headphones black"  # the table memorised its own query
    held_out = out_of_fold_rewrites(full.vocabulary, examples, folds=3)
    assert set(held_out) == set(examples["query"])
    assert held_out["hdphns blk"] == "hdphns black"  # "hdphns" is seen in no other fold
    with pytest.raises(ValueError, match="folds"):
        out_of_fold_rewrites(full.vocabulary, examples, folds=1)


def test_calibration_of_a_cascade_compares_against_the_front_end():
    ids = ["a", "b", "c", "d"]
    raw = {q: f"raw {q}" for q in ids}
    fallback = {q: f"front {q}" for q in ids}
    scored = {q: (f"front {q} lm", c) for q, c in zip(ids, [0.9, 0.8, 0.7, 0.6])}
    allowed = dict.fromkeys(ids, True)
    relevant_raw = dict.fromkeys(ids, 1.0)
    relevant_front = dict.fromkeys(ids, 3.0)
    # the LM beats the raw query but not the front end: it abstains and the front end is served
    worse = dict.fromkeys(ids, 2.0)
    result = calibrate_threshold(raw, scored, allowed, relevant_raw, worse, set(), 0.02, fallback, relevant_front)
    assert result["abstains"] and "front end" in result["abstain_reason"]
    assert result["calibration_relevant_per_query"] == 3.0
    # better on its two most confident queries only: the threshold keeps those
    better = {"a": 4.0, "b": 4.0, "c": 1.0, "d": 1.0}
    result = calibrate_threshold(raw, scored, allowed, relevant_raw, better, set(), 0.02, fallback, relevant_front)
    assert 0.7 < result["min_confidence"] <= 0.8 and result["calibration_relevant_per_query"] == 3.5
    assert result["calibration_fallback_relevant_per_query"] == 3.0


def _quick(steps: int) -> TrainingConfig:
    return TrainingConfig(
        max_steps=steps, micro_batch_size=8, learning_rate=1e-2, warmup_steps=1, checkpoint_every=0, progress=False
    )


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(n_products=150, n_queries=60, seed=3)


def test_cascade_teacher_trains_saves_its_front_end_and_passes_it_to_the_student(dataset, tmp_path):
    from minielm.distill.rewriter_student import distill_rewriter

    small = TinyBackboneConfig(
        hidden_size=48, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=96, vocab_size=400
    )
    config = tiny_rewriter_config(
        tiny=small, training=_quick(3), max_eval_queries=6, front_end="baseline", front_end_folds=3
    )
    run = train_rewriter_teacher(dataset, tmp_path / "teacher", config)
    assert json.loads((run.model_dir / "metadata.json").read_text())["front_end"] == "baseline"
    teacher = load_model_dir(run.model_dir, "rewriter")
    assert isinstance(teacher.front_end, PhraseTableRewriter) and teacher.front_end.phrases
    assert "calibration_fallback_relevant_per_query" in run.metrics

    distill = DistillConfig(rewriter=RewriterStudentConfig(num_layers=1, batch_size=4, max_new_tokens=12))
    result = distill_rewriter(teacher, ["wireles hedphones blk", "red hat"], distill, tmp_path / "work", steps=2)
    assert result.student.front_end is teacher.front_end
    student = CausalRewriter.load(result.student.save(tmp_path / "student"))
    assert student.front_end is not None and student.front_end.phrases == teacher.front_end.phrases


def test_label_free_cascade_mines_its_front_end_from_the_verified_pairs(dataset, tmp_path):
    """Without canonical rewrites the front end's phrase table comes from the pairs that retrieval verified."""
    small = TinyBackboneConfig(
        hidden_size=48, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=96, vocab_size=400
    )
    config = tiny_rewriter_config(
        tiny=small,
        training=_quick(2),
        max_eval_queries=6,
        front_end="baseline",
        front_end_folds=3,
        label_free="on",
        label_free_rounds=1,
    )
    run = train_rewriter(dataset, tmp_path, config)
    table = load_model_dir(run.model_dir, "rewriter").front_end.phrases
    kept = pd.read_parquet(tmp_path / KEPT_PAIRS_FILE)
    assert table and len(kept) > 0
    assert table != PhraseTableRewriter.fit(dataset.products, dataset.examples).phrases, "not canonical_query's"
    verified = " | ".join(kept["query"].str.lower())
    assert all(source.replace("#", "") in verified for source in table), "every edit comes from a verified query"
