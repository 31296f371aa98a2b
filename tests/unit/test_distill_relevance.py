"""Relevance distillation: losses, augmentation, the cross-encoder student, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from minielm.config import DistillConfig, RelevanceStudentConfig
from minielm.distill.augment import AugmentedDataError, build_triples, label_triples
from minielm.distill.losses import margin_mse, rewriter_distill_loss, soft_label_kl, token_kl_loss
from minielm.distill.relevance_student import distill_relevance
from minielm.models.cross_encoder import CrossEncoderError, CrossEncoderScorer
from minielm.models.interfaces import RelevanceScorer
from tests.unit.distill_fixtures import (
    OverlapTeacher,
    held_out_pairs,
    overlap_retriever,
    overlap_training_triples,
    product_texts,
    tiny_bert_scorer,
    tiny_catalog,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_margin_mse_is_zero_when_margins_match_and_ignores_offsets():
    s_pos, s_neg = torch.tensor([0.9, 0.5]), torch.tensor([0.1, 0.4])
    assert margin_mse(s_pos + 3.0, s_neg + 3.0, s_pos, s_neg).item() == pytest.approx(0.0)
    # hand computed: margins 0.8 vs 0.2 and 0.1 vs 0.1 -> (0.6^2 + 0) / 2
    assert margin_mse(s_pos, s_neg, torch.tensor([0.3, 0.5]), torch.tensor([0.1, 0.4])).item() == pytest.approx(0.18)


def test_token_kl_is_zero_for_identical_logits_and_only_counts_answer_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.full((2, 5), -100)
    labels[:, 3:] = 1
    assert token_kl_loss(logits, logits.clone(), labels, temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = logits.clone()
    other[:, 4, :] += torch.randn(2, 11) * 5  # position 4 predicts token 5 (outside the labels' shift window)
    assert token_kl_loss(logits, other, labels, temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)
    other[:, 2, :] += torch.randn(2, 11) * 5
    assert token_kl_loss(logits, other, labels, temperature=2.0).item() > 0.01
    with pytest.raises(ValueError, match="vocabularies must match"):
        token_kl_loss(logits, torch.randn(2, 5, 12), labels)
    loss, parts = rewriter_distill_loss(logits, other, labels, seq_kd_weight=0.25, temperature=2.0)
    assert loss.item() == pytest.approx(0.25 * parts["seq_kd_ce"] + 0.75 * parts["token_kl"], rel=1e-5)


def test_soft_label_kl_is_zero_at_the_teacher_distribution():
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    assert soft_label_kl(probs.log(), probs).item() == pytest.approx(0.0, abs=1e-6)


def test_triples_come_from_every_source_and_are_oriented_by_the_teacher():
    products = tiny_catalog()
    triples = build_triples(
        ["red shoe", "blue lamp", "black mug"],
        products,
        overlap_retriever(products),
        triples_per_query=10,
        retrieval_depth=6,
        seed=1,
    )
    assert len(triples) == 30
    assert set(triples["source"]) == {"retrieved", "same_category", "random"}
    assert (triples["product_a"] != triples["product_b"]).all()
    labelled = label_triples(triples, product_texts(products), OverlapTeacher())
    assert (labelled["margin"] >= 0).all()
    assert (
        labelled.loc[labelled["query"] == "red shoe", "pos_product_id"]
        .map(product_texts(products))
        .eq("red shoe")
        .any()
    )
    same = build_triples(
        ["red shoe", "blue lamp", "black mug"],
        products,
        overlap_retriever(products),
        triples_per_query=10,
        retrieval_depth=6,
        seed=1,
    )
    pd.testing.assert_frame_equal(triples, same)


def test_empty_augmented_data_fails_clearly():
    products = tiny_catalog()
    with pytest.raises(AugmentedDataError, match="no non-empty queries"):
        build_triples(["", "   "], products, overlap_retriever(products))
    empty = pd.DataFrame(columns=["query", "product_a", "product_b", "source"])
    with pytest.raises(AugmentedDataError, match="augmented data is empty"):
        label_triples(empty, product_texts(products), OverlapTeacher())
    with pytest.raises(AugmentedDataError, match="augmented data is empty"):
        distill_relevance(
            tiny_bert_scorer(), pd.DataFrame(), product_texts(products), DistillConfig(), work_dir=Path("unused")
        )


@pytest.mark.slow
def test_tiny_teacher_distilled_into_tiny_cross_encoder_moves_toward_the_teacher(tmp_path):
    products = tiny_catalog()
    texts = product_texts(products)
    teacher = OverlapTeacher()
    labelled = overlap_training_triples(products, teacher)
    student = tiny_bert_scorer()
    assert isinstance(student, RelevanceScorer)
    hq, ht = held_out_pairs(products)

    def agreement() -> float:
        s, t = student.score(hq, ht), teacher.score(hq, ht)
        return float(np.corrcoef(s, t)[0, 1])

    before = agreement()
    params_before = [p.detach().clone() for p in student.model.parameters()]
    config = DistillConfig(relevance=RelevanceStudentConfig(batch_size=16, learning_rate=1e-2, soft_label_weight=0.5))
    result = distill_relevance(student, labelled, texts, config, work_dir=tmp_path / "work", steps=250)
    assert not (tmp_path / "work" / "checkpoints").exists()
    assert np.mean(result.losses[-30:]) < 0.75 * np.mean(result.losses[:30])
    assert all(not torch.equal(a, b) for a, b in zip(params_before, student.model.parameters()))
    after = agreement()
    assert after > before + 0.2 and after > 0.3, (before, after)

    student.version = "v-test"
    student.save(tmp_path / "student")
    loaded = CrossEncoderScorer.load(tmp_path / "student")
    assert loaded.version == "v-test"
    np.testing.assert_allclose(loaded.predict_proba(hq[:8], ht[:8]), student.predict_proba(hq[:8], ht[:8]), atol=1e-5)
    assert loaded.predict_proba(hq[:3], ht[:3]).sum(axis=1) == pytest.approx([1, 1, 1], abs=1e-5)


def test_cross_encoder_rejects_mismatched_inputs():
    student = tiny_bert_scorer()
    with pytest.raises(CrossEncoderError, match="same length"):
        student.score(["a", "b"], ["x"])
    with pytest.raises(CrossEncoderError, match=r"product_texts\[0\] must be a string"):
        student.score(["a"], [None])
    assert student.predict_proba([], []).shape == (0, 4)
    with pytest.raises(CrossEncoderError, match="does not hold a cross-encoder"):
        CrossEncoderScorer.load("/nonexistent")


def test_default_backbone_loads_offline_from_the_wheel():
    scorer = CrossEncoderScorer.from_backbone(num_layers=2)
    assert scorer.model.encoder.config.hidden_size == 384
    assert len(scorer.model.encoder.encoder.layer) == 2
    assert scorer.score(["red shoe"], ["red running shoe"]).shape == (1,)
