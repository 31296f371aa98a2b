"""The quality gate: a candidate is registered only if it beats the raw query and does not regress
the production model beyond the configured tolerance (``settings.gate``).

Inputs are metric dicts as produced by :func:`minielm.evaluation.evaluate_queries` (or one system's
entry of a :func:`~minielm.evaluation.compare_rewriters` report), measured on the same held-out queries.
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "metric": self.metric,
            "candidate": self.candidate,
            "raw": self.raw,
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


def quality_gate(
    candidate: Mapping[str, Any], raw: Mapping[str, Any], production: Mapping[str, Any] | None, config: GateConfig
) -> GateResult:
    """Pass when ``candidate - raw > min_gain_over_raw`` and, if a production model exists,
    ``candidate >= production - max_regression_vs_production`` (both on ``config.metric``)."""
    metric = config.metric
    value = _value(candidate, metric, "candidate")
    baseline = _value(raw, metric, "raw")
    reasons: list[str] = []
    passed = True
    if math.isnan(value):
        passed = False
        reasons.append(f"candidate {metric} is NaN")
    gain = value - baseline
    if gain > config.min_gain_over_raw:
        reasons.append(
            f"{metric} {value:.4f} beats raw {baseline:.4f} by {gain:+.4f} "
            f"(> min_gain_over_raw {config.min_gain_over_raw})"
        )
    else:
        passed = False
        reasons.append(
            f"{metric} {value:.4f} does not beat raw {baseline:.4f} by more than "
            f"min_gain_over_raw {config.min_gain_over_raw} (gain {gain:+.4f})"
        )
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
        passed=passed, reasons=reasons, metric=metric, candidate=value, raw=baseline, production=current
    )
    log.info("quality gate", passed=result.passed, metric=metric, candidate=value, raw=baseline, production=current)
    return result
