"""Selective rewriting: the threshold maximises gain within the harm target, never lands at 0 by accident,
and abstains (with the reason) when every gainful threshold harms too many leave-alone queries."""

from __future__ import annotations

import pandas as pd
import pytest

from minielm.teachers.abstention import (
    NEVER_REWRITE,
    calibrate_threshold,
    is_harmed,
    leave_alone_ids,
    safe_share,
)

RAW = {"n1": "wireles hedphones", "n2": "runing shoes", "c1": "coffee table", "c2": "yoga mat"}
RELEVANT_RAW = {"n1": 1.0, "n2": 2.0, "c1": 5.0, "c2": 5.0}


def _calibrate(scored, relevant_rewrite, max_harm_rate=0.0, allowed=None):
    allowed = allowed or dict.fromkeys(scored, True)
    return calibrate_threshold(RAW, scored, allowed, RELEVANT_RAW, relevant_rewrite, {"c1", "c2"}, max_harm_rate)


def test_threshold_keeps_confident_fixes_and_drops_unsure_harm():
    scored = {
        "n1": ("wireless headphones", 0.9),
        "n2": ("running shoes", 0.8),
        "c1": ("coffee filters", 0.3),  # unsure and harmful: a clean query loses a word
        "c2": ("yoga mat", 0.95),
    }
    relevant_rewrite = {"n1": 6.0, "n2": 7.0, "c1": 1.0, "c2": 5.0}
    result = _calibrate(scored, relevant_rewrite)
    assert 0.3 < result["min_confidence"] <= 0.8 and not result["abstains"]
    assert result["calibration_harm_rate"] == 0.0 and result["calibration_always_rewrite_harm_rate"] == 0.5
    assert result["calibration_relevant_per_query"] == (6 + 7 + 5 + 5) / 4


def test_guard_rejections_never_count_as_rewrites():
    scored = {
        "n1": ("wireless headphones", 0.9),
        "n2": ("running shoes", 0.8),
        "c1": ("coffee filters", 0.99),
        "c2": ("yoga mat", 0.95),
    }
    relevant_rewrite = {"n1": 6.0, "n2": 7.0, "c1": 1.0, "c2": 5.0}
    allowed = {"n1": True, "n2": True, "c1": False, "c2": True}
    result = _calibrate(scored, relevant_rewrite, allowed=allowed)
    assert result["min_confidence"] == 0.0 and result["calibration_harm_rate"] == 0.0
    assert result["calibration_guard_rejected"] == 1


def test_abstains_with_a_reason_when_gain_needs_harm():
    scored = {
        "n1": ("wireless headphones", 0.5),
        "n2": ("running shoes", 0.5),
        "c1": ("coffee filters", 0.9),
        "c2": ("yoga", 0.9),
    }
    relevant_rewrite = {"n1": 6.0, "n2": 7.0, "c1": 1.0, "c2": 2.0}
    result = _calibrate(scored, relevant_rewrite)
    assert result["min_confidence"] == NEVER_REWRITE and result["abstains"]
    assert "harms more than" in result["abstain_reason"]
    assert result["calibration_relevant_per_query"] == result["calibration_raw_relevant_per_query"]


def test_abstains_when_nothing_beats_raw():
    scored = {q: (text, 0.9) for q, text in RAW.items()}
    result = _calibrate(scored, dict(RELEVANT_RAW), max_harm_rate=0.5)
    assert result["abstains"] and result["abstain_reason"] == "no threshold beats the raw queries on validation"


def test_harm_needs_a_change():
    assert not is_harmed("Coffee  table", "coffee table", 5, 0)
    assert is_harmed("coffee table", "coffee tables sale", 5, 4), "fewer relevant products is harm"
    assert is_harmed("coffee table", "table", 5, 5), "a lost content word is harm"


def test_leave_alone_queries_from_noise_canonical_or_everything():
    frame = pd.DataFrame(
        {
            "query_id": ["1", "2", "3"],
            "query": ["red mug", "rd mug", "garden hose"],
            "canonical_query": ["red mug", "red mug", "garden hose"],
            "noise": ["", "misspelling", "out_of_catalog"],
        }
    )
    assert leave_alone_ids(frame)[0] == {"1", "3"}
    assert leave_alone_ids(frame.drop(columns="noise"))[0] == {"1", "3"}
    ids, how = leave_alone_ids(frame.drop(columns=["noise", "canonical_query"]))
    assert ids == {"1", "2", "3"} and how.startswith("every query")


def test_safe_share_counts_unchanged_and_careful_rewrites():
    report = safe_share(["red mug", "wireles mouse", "sofa without arms"], ["red mug", "wireless mouse", "sofa"])
    assert report["unchanged_share"] == pytest.approx(1 / 3) and report["safe_share"] == pytest.approx(2 / 3)
    assert report["unsafe_examples"][0]["lost"] == ["without", "arms"]
