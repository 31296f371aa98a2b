"""The relevance student's grouped training: one query's products per group, all-pairs margins, listwise KL."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from minielm.config import DistillConfig, RelevanceStudentConfig
from minielm.distill.augment import AugmentedDataError
from minielm.distill.losses import group_margin_mse, listwise_kl, margin_mse
from minielm.distill.relevance_student import distill_relevance, draw_groups, labelled_pairs, query_groups
from tests.unit.distill_fixtures import (
    OverlapTeacher,
    held_out_pairs,
    overlap_training_triples,
    product_texts,
    tiny_bert_scorer,
    tiny_catalog,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_group_margin_mse_equals_margin_mse_over_every_pair_of_each_group():
    student = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.3])
    teacher = torch.tensor([0.2, 0.6, 1.0, 0.1, 0.5])
    per_group = []
    for rows in ([0, 1, 2], [3, 4]):
        i, j = zip(*itertools.product(rows, rows))
        per_group.append(margin_mse(student[list(i)], student[list(j)], teacher[list(i)], teacher[list(j)]))
    assert group_margin_mse(student, teacher, [3, 2]).item() == pytest.approx(torch.stack(per_group).mean().item())
    assert group_margin_mse(teacher + 0.4, teacher, [3, 2]).item() == pytest.approx(0.0, abs=1e-7)


def test_listwise_kl_is_zero_for_the_same_ranking_scores_and_grows_when_the_order_flips():
    teacher = torch.tensor([0.9, 0.5, 0.1, 0.8, 0.2])
    assert listwise_kl(teacher + 0.3, teacher, [3, 2], 0.1).item() == pytest.approx(0.0, abs=1e-6)
    flipped = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.8])
    assert listwise_kl(flipped, teacher, [3, 2], 0.1).item() > 1.0
    with pytest.raises(ValueError, match="temperature"):
        listwise_kl(flipped, teacher, [3, 2], 0.0)


def test_group_losses_reject_sizes_that_do_not_cover_the_scores():
    scores = torch.zeros(5)
    with pytest.raises(ValueError, match=r"group sizes \[3, 1\]"):
        group_margin_mse(scores, scores, [3, 1])
    with pytest.raises(ValueError, match="sum to the 5 scores"):
        listwise_kl(scores, scores, [2, 2], 0.1)


def _triples() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query": ["red mug", "red mug", "lamp", "chair"],
            "pos_product_id": ["p1", "p2", "p3", "p5"],
            "neg_product_id": ["p2", "p4", "p4", "p5"],
            "pos_score": [0.9, 0.6, 0.7, 0.5],
            "neg_score": [0.6, 0.1, 0.2, 0.5],
        }
    )


def test_labelled_pairs_keep_one_row_per_query_and_product_and_groups_need_two_products():
    pairs = labelled_pairs(_triples())
    assert sorted(zip(pairs["query"], pairs["product_id"], pairs["score"])) == [
        ("chair", "p5", 0.5),
        ("lamp", "p3", 0.7),
        ("lamp", "p4", 0.2),
        ("red mug", "p1", 0.9),
        ("red mug", "p2", 0.6),
        ("red mug", "p4", 0.1),
    ]
    groups = query_groups(pairs)
    assert sorted(sorted(pairs.loc[g, "product_id"]) for g in groups) == [["p1", "p2", "p4"], ["p3", "p4"]]
    with pytest.raises(AugmentedDataError, match="none of the 1 queries has 2 or more"):
        query_groups(pairs[pairs["query"] == "chair"])


def test_draw_groups_fills_the_batch_with_groups_of_two_to_list_size_distinct_products():
    groups = [np.arange(0, 5), np.arange(5, 7), np.arange(7, 20)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        picked = draw_groups(groups, 32, 8, rng)
        assert sum(len(g) for g in picked) in (31, 32)
        assert all(2 <= len(g) <= 8 and len(set(g)) == len(g) for g in picked)
        assert all(any(set(g) <= set(rows) for rows in groups) for g in picked)


def test_list_size_one_is_rejected_by_name():
    with pytest.raises(ValidationError, match="at least 2 products"):
        RelevanceStudentConfig(list_size=1)


@pytest.mark.slow
def test_grouped_training_moves_every_parameter_toward_the_teacher_on_held_out_queries(tmp_path):
    products = tiny_catalog()
    texts = product_texts(products)
    teacher = OverlapTeacher()
    labelled = overlap_training_triples(products, teacher)
    held_queries, held_texts = held_out_pairs(products)
    student = tiny_bert_scorer()

    def agreement() -> float:
        scores = student.score(held_queries, held_texts), teacher.score(held_queries, held_texts)
        return float(np.corrcoef(*scores)[0, 1])

    before, params_before = agreement(), [p.detach().clone() for p in student.model.parameters()]
    config = DistillConfig(
        relevance=RelevanceStudentConfig(batch_size=16, learning_rate=1e-2, soft_label_weight=0.5, list_size=6)
    )
    result = distill_relevance(student, labelled, texts, config, work_dir=tmp_path / "work", steps=250)
    assert {"margin_mse", "listwise_kl", "soft_kl"} <= set(result.parts[0])
    assert all(not torch.equal(a, b) for a, b in zip(params_before, student.model.parameters()))
    after = agreement()
    assert after > before + 0.2 and after > 0.3, (before, after)
