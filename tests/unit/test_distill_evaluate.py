"""Gain share, the quality table and the students' gate on hand-made reports."""

from __future__ import annotations

import pytest

from minielm.config import DistillConfig, GateConfig, RelevanceStudentConfig
from minielm.distill.evaluate import format_quality_table, gain_share
from minielm.distill.stages import gate_students


def _report(student_rpq: float, student_ndcg: float, baseline_rpq: float = 2.5, harm: float = 0.0) -> dict:
    def rw(v):
        return {"relevant_per_query": v, "ndcg": v / 10, "recall": v / 20, "zero_result_rate": 0.1}

    def rel(n):
        return {"accuracy": 0.7, "macro_f1": 0.5, "ndcg@10": n, "n_pairs": 100}

    return {
        "split": "test",
        "rewriter": {
            "k": 10,
            "n_queries": 50,
            "systems": {
                "raw": rw(2.0),
                "baseline": rw(baseline_rpq),
                "oracle": rw(4.0),
                "teacher": rw(3.0),
                "student": rw(student_rpq),
            },
            "student_keeps_teacher_gain": gain_share(student_rpq, 3.0, 2.0),
            "harm": {"student": {"harm_rate": harm}},
        },
        "relevance": {"k": 10, "systems": {"teacher": rel(0.80), "student": rel(student_ndcg)}},
    }


def test_gain_share_is_the_fraction_of_the_teachers_gain_kept():
    assert gain_share(2.95, 3.0, 2.0) == pytest.approx(0.95)
    assert gain_share(3.5, 3.0, 2.0) == pytest.approx(1.5)
    assert gain_share(1.5, 3.0, 2.0) == pytest.approx(-0.5)
    assert gain_share(2.5, 2.0, 2.0) is None


def test_quality_table_lists_every_system_and_the_share():
    table = format_quality_table(_report(2.9, 0.81)["rewriter"], _report(2.9, 0.81)["relevance"])
    for system in ("raw", "oracle", "teacher", "student"):
        assert f"  {system}" in table
    assert "student keeps 90.0% of the teacher's gain over raw" in table
    assert "macro-F1" in table


def test_gate_passes_a_good_pair_and_names_each_failure():
    config = DistillConfig(relevance=RelevanceStudentConfig(max_ndcg_gap=0.05))
    good = gate_students(_report(2.9, 0.78), None, GateConfig(), config)
    assert good["passed"] and good["relevance"]["passed"]
    worse_than_raw = gate_students(_report(1.9, 0.80), None, GateConfig(), config)
    assert not worse_than_raw["passed"] and "does not beat raw" in " ".join(worse_than_raw["reasons"])
    weak_relevance = gate_students(_report(2.9, 0.70), None, GateConfig(), config)
    assert not weak_relevance["passed"] and not weak_relevance["relevance"]["passed"]
    regressed = gate_students(_report(2.9, 0.80), {"relevant_per_query": 3.5}, GateConfig(), config)
    assert not regressed["passed"] and "regresses production" in " ".join(regressed["reasons"])
    below_baseline = gate_students(_report(2.9, 0.80, baseline_rpq=3.1), None, GateConfig(), config)
    assert not below_baseline["passed"] and "does not beat baseline" in " ".join(below_baseline["reasons"])
    harmful = gate_students(_report(2.9, 0.80, harm=0.1), None, GateConfig(), config)
    assert not harmful["passed"] and "exceeds max_harm_rate" in " ".join(harmful["reasons"])
    unmeasured = _report(2.9, 0.80)
    del unmeasured["rewriter"]["harm"], unmeasured["rewriter"]["systems"]["baseline"]
    assert not gate_students(unmeasured, None, GateConfig(), config)["passed"]
