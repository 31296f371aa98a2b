"""The quality gate: a candidate is registered only if it beats the raw query **and the strongest
non-neural baseline**, keeps its harm rate within target, and does not regress the production model
beyond the configured tolerance (``settings.gate``).

Metric inputs are dicts as produced by :func:`minielm.evaluation.evaluate_queries` (or one system's
entry of a :func:`~minielm.evaluation.compare_rewriters` report), measured on the same held-out
queries; ``harm_rate`` is the share of clean and out-of-catalog held-out queries whose rewrite loses
a content word or changes intent (:func:`minielm.evaluation.harm_on_unchanged_queries`). A missing
baseline or harm measurement fails the gate: "not measured" never counts as "passed".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from minielm.config import GateConfig
from minielm.logs import get_logger

log = get_logger(__name__)


@dataclass
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    metric: str = "relevant_per_query"
    candidate: float | None = None
    raw: float | None = None
    production: float | None = None
    baseline: float | None = None
    harm_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "metric": self.metric,
            "candidate": self.candidate,
            "raw": self.raw,
            "baseline": self.baseline,
            "harm_rate": self.harm_rate,
            "production": self.production,
        }


def _value(metrics: Mapping[str, Any], metric: str, what: str) -> float:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"quality_gate: {what} must be a dict of metrics, got {type(metrics).__name__}")
    if metric not in metrics:
        raise ValueError(f"quality_gate: {what} metrics lack {metric!r} (have {sorted(metrics)})")
    try:
        return float(metrics[metric])
    except (TypeError, ValueError):
        raise ValueError(f"quality_gate: {what}[{metric!r}] is not a number: {metrics[metric]!r}") from None


def _beats(value: float, reference: float, margin: float, metric: str, name: str, setting: str) -> tuple[bool, str]:
    gain = value - reference
    if gain > margin:
        return True, f"{metric} {value:.4f} beats {name} {reference:.4f} by {gain:+.4f} (> {setting} {margin})"
    return False, (
        f"{metric} {value:.4f} does not beat {name} {reference:.4f} by more than {setting} {margin} (gain {gain:+.4f})"
    )


def quality_gate(
    candidate: Mapping[str, Any],
    raw: Mapping[str, Any],
    production: Mapping[str, Any] | None,
    config: GateConfig,
    *,
    baseline: Mapping[str, Any] | None = None,
    harm_rate: float | None = None,
) -> GateResult:
    """Pass when, on ``config.metric``, ``candidate - raw > min_gain_over_raw`` and ``candidate -
    baseline > min_gain_over_baseline`` (``baseline``: the strongest non-neural baseline's metrics),
    ``harm_rate <= max_harm_rate``, and, if a production model exists, ``candidate >= production -
    max_regression_vs_production``. ``baseline=None`` or ``harm_rate=None`` fails with that reason."""
    metric = config.metric
    value = _value(candidate, metric, "candidate")
    raw_value = _value(raw, metric, "raw")
    reasons: list[str] = []
    passed = True
    if math.isnan(value):
        passed = False
        reasons.append(f"candidate {metric} is NaN")
    ok, reason = _beats(value, raw_value, config.min_gain_over_raw, metric, "raw", "min_gain_over_raw")
    passed &= ok
    reasons.append(reason)
    baseline_value = None
    if baseline is None:
        passed = False
        reasons.append("no baseline metrics: a candidate must beat the strongest non-neural baseline, measured")
    else:
        baseline_value = _value(baseline, metric, "baseline")
        ok, reason = _beats(
            value, baseline_value, config.min_gain_over_baseline, metric, "baseline", "min_gain_over_baseline"
        )
        passed &= ok
        reasons.append(reason)
    if harm_rate is None:
        passed = False
        reasons.append("harm rate not measured: the gate needs it on clean and out-of-catalog held-out queries")
    elif not harm_rate <= config.max_harm_rate:  # NaN fails too
        passed = False
        reasons.append(f"harm rate {harm_rate:.2%} exceeds max_harm_rate {config.max_harm_rate:.2%}")
    else:
        reasons.append(f"harm rate {harm_rate:.2%} is within max_harm_rate {config.max_harm_rate:.2%}")
    current = None
    if production is None:
        reasons.append("no production model: nothing to regress against")
    else:
        current = _value(production, metric, "production")
        floor = current - config.max_regression_vs_production
        if value >= floor:
            reasons.append(
                f"{metric} {value:.4f} is within max_regression_vs_production "
                f"{config.max_regression_vs_production} of production {current:.4f}"
            )
        else:
            passed = False
            reasons.append(
                f"{metric} {value:.4f} regresses production {current:.4f} by {current - value:.4f} "
                f"(> max_regression_vs_production {config.max_regression_vs_production})"
            )
    result = GateResult(
        passed=bool(passed),
        reasons=reasons,
        metric=metric,
        candidate=value,
        raw=raw_value,
        production=current,
        baseline=baseline_value,
        harm_rate=harm_rate,
    )
    log.info(
        "quality gate",
        passed=result.passed,
        metric=metric,
        candidate=value,
        raw=raw_value,
        baseline=baseline_value,
        harm_rate=harm_rate,
        production=current,
    )
    return result
