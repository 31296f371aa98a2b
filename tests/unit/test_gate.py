"""The quality gate: beats raw and the baseline, keeps harm within target, does not regress production."""

from __future__ import annotations

import pytest

from minielm.config import ConfigError, GateConfig, load_settings
from minielm.gate import quality_gate

RAW = {"relevant_per_query": 3.0, "ndcg": 0.60}
BASELINE = {"relevant_per_query": 3.4, "ndcg": 0.66}


def _gate(candidate, production=None, config=None, baseline=BASELINE, harm_rate=0.01):
    return quality_gate(candidate, RAW, production, config or GateConfig(), baseline=baseline, harm_rate=harm_rate)


def test_passes_when_better_than_raw_and_baseline_and_harmless():
    result = _gate({"relevant_per_query": 3.5, "ndcg": 0.7})
    assert result.passed
    assert any("beats raw" in r for r in result.reasons)
    assert any("beats baseline 3.4000" in r for r in result.reasons)
    assert any("within max_harm_rate 2.00%" in r for r in result.reasons)
    assert any("no production model" in r for r in result.reasons)
    assert result.as_dict()["baseline"] == 3.4 and result.as_dict()["harm_rate"] == 0.01


def test_fails_when_not_beating_raw_by_the_margin():
    result = _gate({"relevant_per_query": 3.4}, config=GateConfig(min_gain_over_raw=0.5), baseline=RAW)
    assert not result.passed
    assert any("does not beat raw" in r and "min_gain_over_raw 0.5" in r for r in result.reasons)
    assert not _gate({"relevant_per_query": 3.0}, baseline=RAW).passed  # a tie is not a win


def test_fails_when_it_beats_raw_but_not_the_baseline():
    result = _gate({"relevant_per_query": 3.3})
    assert not result.passed
    assert any("does not beat baseline 3.4000" in r for r in result.reasons)
    assert not _gate({"relevant_per_query": 3.4}).passed  # a tie with the baseline is not a win
    margin = GateConfig(min_gain_over_baseline=0.2)
    assert not _gate({"relevant_per_query": 3.55}, config=margin).passed
    assert _gate({"relevant_per_query": 3.65}, config=margin).passed


def test_fails_when_the_harm_rate_is_over_target():
    result = _gate({"relevant_per_query": 4.0}, harm_rate=0.05)
    assert not result.passed
    assert any("harm rate 5.00% exceeds max_harm_rate 2.00%" in r for r in result.reasons)
    assert _gate({"relevant_per_query": 4.0}, harm_rate=0.02).passed  # the boundary is allowed
    assert not _gate({"relevant_per_query": 4.0}, harm_rate=float("nan")).passed


def test_unmeasured_baseline_or_harm_fails():
    no_baseline = _gate({"relevant_per_query": 4.0}, baseline=None)
    assert not no_baseline.passed and any("no baseline metrics" in r for r in no_baseline.reasons)
    no_harm = _gate({"relevant_per_query": 4.0}, harm_rate=None)
    assert not no_harm.passed and any("harm rate not measured" in r for r in no_harm.reasons)


def test_production_tolerance_boundary():
    config = GateConfig(max_regression_vs_production=0.25)
    production = {"relevant_per_query": 4.0}
    assert _gate({"relevant_per_query": 3.75}, production, config).passed
    failed = _gate({"relevant_per_query": 3.7}, production, config)
    assert not failed.passed
    assert any("regresses production 4.0000 by 0.3000" in r for r in failed.reasons)
    assert failed.as_dict()["production"] == 4.0


def test_gate_on_another_metric_and_bad_metrics():
    config = GateConfig(metric="ndcg", max_regression_vs_production=0.0)
    assert not _gate({"ndcg": 0.67}, {"ndcg": 0.68}, config).passed
    with pytest.raises(ValueError, match="candidate metrics lack 'ndcg'"):
        _gate({"relevant_per_query": 1.0}, config=config)
    with pytest.raises(ValueError, match="baseline metrics lack 'ndcg'"):
        _gate({"ndcg": 0.9}, config=config, baseline={"relevant_per_query": 1.0})
    with pytest.raises(ValueError, match="not a number"):
        _gate({"ndcg": "high"}, config=config)
    assert not _gate({"ndcg": float("nan")}, config=config).passed


def test_gate_settings_are_validated():
    with pytest.raises(ConfigError, match="gate.max_regression_vs_production"):
        load_settings(overrides=["gate.max_regression_vs_production=-1"], environ={}, use_services_state=False)
    with pytest.raises(ConfigError, match="gate.metric"):
        load_settings(overrides=["gate.metric=mrr"], environ={}, use_services_state=False)
    with pytest.raises(ConfigError, match="gate.max_harm_rate"):
        load_settings(overrides=["gate.max_harm_rate=1.5"], environ={}, use_services_state=False)
    assert load_settings(environ={}, use_services_state=False).gate.max_harm_rate == 0.02
