"""The quality gate: beats raw, does not regress production beyond the tolerance, names its reasons."""

from __future__ import annotations

import pytest

from minielm.config import ConfigError, GateConfig, load_settings
from minielm.gate import quality_gate

RAW = {"relevant_per_query": 3.0, "ndcg": 0.60}


def test_passes_when_better_than_raw_without_production():
    result = quality_gate({"relevant_per_query": 3.5, "ndcg": 0.7}, RAW, None, GateConfig())
    assert result.passed
    assert any("beats raw" in r for r in result.reasons)
    assert any("no production model" in r for r in result.reasons)


def test_fails_when_not_beating_raw_by_the_margin():
    config = GateConfig(min_gain_over_raw=0.5)
    result = quality_gate({"relevant_per_query": 3.4}, RAW, None, config)
    assert not result.passed
    assert any("does not beat raw" in r and "min_gain_over_raw 0.5" in r for r in result.reasons)
    assert not quality_gate({"relevant_per_query": 3.0}, RAW, None, GateConfig()).passed  # a tie is not a win


def test_production_tolerance_boundary():
    config = GateConfig(max_regression_vs_production=0.25)
    production = {"relevant_per_query": 4.0}
    assert quality_gate({"relevant_per_query": 3.75}, RAW, production, config).passed
    failed = quality_gate({"relevant_per_query": 3.7}, RAW, production, config)
    assert not failed.passed
    assert any("regresses production 4.0000 by 0.3000" in r for r in failed.reasons)
    assert failed.as_dict()["production"] == 4.0


def test_gate_on_another_metric_and_bad_metrics():
    config = GateConfig(metric="ndcg", max_regression_vs_production=0.0)
    assert not quality_gate({"ndcg": 0.65}, RAW, {"ndcg": 0.66}, config).passed
    with pytest.raises(ValueError, match="candidate metrics lack 'ndcg'"):
        quality_gate({"relevant_per_query": 1.0}, RAW, None, config)
    with pytest.raises(ValueError, match="not a number"):
        quality_gate({"ndcg": "high"}, RAW, None, config)
    assert not quality_gate({"ndcg": float("nan")}, RAW, None, config).passed


def test_gate_settings_are_validated():
    with pytest.raises(ConfigError, match="gate.max_regression_vs_production"):
        load_settings(overrides=["gate.max_regression_vs_production=-1"], environ={}, use_services_state=False)
    with pytest.raises(ConfigError, match="gate.metric"):
        load_settings(overrides=["gate.metric=mrr"], environ={}, use_services_state=False)
