"""Per-query nDCG of the relevance models and the paired gap between two of them on one test set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from minielm.teachers.metrics import paired_difference, per_query_ndcg, relevance_metrics


def test_per_query_ndcg_ranks_each_querys_judged_products_and_averages_to_the_reported_figure():
    frame = pd.DataFrame({"query_id": ["q1", "q1", "q1", "q2", "q2"], "esci_label": ["E", "I", "S", "I", "E"]})
    right = np.array([0.9, 0.1, 0.5, 0.2, 0.8])
    wrong = np.array([0.1, 0.9, 0.5, 0.8, 0.2])
    assert per_query_ndcg(frame, right, k=10) == pytest.approx([1.0, 1.0])
    flipped = per_query_ndcg(frame, wrong, k=10)
    assert (flipped < 1.0).all()
    probabilities = np.full((5, 4), 0.25)
    assert relevance_metrics(frame, probabilities, wrong, k=10)["ndcg@10"] == pytest.approx(flipped.mean())


def test_paired_difference_reports_the_mean_gap_its_interval_and_the_per_item_wins():
    a = np.array([0.9, 0.8, 1.0, 0.7])
    result = paired_difference(a, a - np.array([0.1, 0.1, 0.0, -0.1]), resamples=2000)
    assert result["mean"] == pytest.approx(0.025)
    assert result["ci95"][0] <= 0.025 <= result["ci95"][1]
    assert (result["wins"], result["losses"], result["ties"], result["items"]) == (2, 1, 1, 4)
    assert paired_difference(a + 0.2, a)["ci95"] == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference(a, a[:3])
