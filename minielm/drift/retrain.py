"""Drift-triggered retraining: whether a drift result should start the RL retraining pipeline, and starting it.

Off by default (``drift.trigger_retraining``). When on, a drift in any check (or only in the checks
listed in ``drift.retraining_checks``) starts the ``rl_retraining`` pipeline through the ``submit``
callable the caller passes in (``pipelines.submit.retraining_submitter``: a Kubeflow Pipelines run
when ``pipelines.kfp_host`` is set, else kfp.local). The core never imports the pipelines package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minielm.config import Settings
from minielm.drift.checks import CHECKS_BY_NAME
from minielm.drift.monitor import DriftResult
from minielm.errors import MinielmError
from minielm.logs import get_logger

log = get_logger(__name__)

RETRAINING_PIPELINE = "rl_retraining"


def retraining_decision(result: DriftResult, settings: Settings) -> tuple[bool, str]:
    """(trigger?, why) for this result under the drift settings."""
    config = settings.drift
    unknown = [name for name in config.retraining_checks if name not in CHECKS_BY_NAME]
    if unknown:
        raise ValueError(
            f"drift.retraining_checks: unknown check(s) {unknown}; expected names from {sorted(CHECKS_BY_NAME)}"
        )
    if not config.trigger_retraining:
        return False, "drift.trigger_retraining is off"
    if result.status != "drift":
        return False, f"no drift detected (status {result.status})"
    drifted = [c.name for c in result.drifted]
    if config.retraining_checks:
        matching = [name for name in drifted if name in config.retraining_checks]
        if not matching:
            return False, f"drifted checks {drifted} are not among drift.retraining_checks"
        return True, f"drift in {matching}"
    return True, f"drift in {drifted}"


# (pipeline name, parameters, run name) -> what was started (mode, run id and URL, or the local result).
Submitter = Callable[[str, dict[str, Any], str], dict[str, Any]]


class RetrainingNotWired(MinielmError):
    """Retraining is on but the caller gave no way to submit the pipeline (a programming error)."""


def trigger_retraining(result: DriftResult, settings: Settings, submit: Submitter | None = None) -> dict[str, Any]:
    """Start the RL retraining pipeline through ``submit`` when the decision says so; returns what happened."""
    trigger, reason = retraining_decision(result, settings)
    outcome: dict[str, Any] = {"triggered": trigger, "reason": reason, "pipeline": RETRAINING_PIPELINE}
    if not trigger:
        return outcome
    if submit is None:
        raise RetrainingNotWired(
            "drift.trigger_retraining is on but no pipeline submitter was passed to the drift job "
            "(run it through `minielm drift check` or the drift_monitoring pipeline)"
        )
    log.info("drift triggers retraining", reason=reason, run_id=result.run_id)
    outcome.update(submit(RETRAINING_PIPELINE, {}, f"minielm-{RETRAINING_PIPELINE}-drift-{result.run_id}"))
    return outcome
