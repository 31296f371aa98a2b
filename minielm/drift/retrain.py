"""Drift-triggered retraining: whether a drift result should start the RL retraining pipeline, and starting it.

Off by default (``drift.trigger_retraining``). When on, a drift in any check (or only in the checks
listed in ``drift.retraining_checks``) runs the ``rl_retraining`` pipeline: submitted to Kubeflow
Pipelines when ``pipelines.kfp_host`` is set, otherwise locally with kfp.local.
"""

from __future__ import annotations

from typing import Any

from minielm.config import Settings
from minielm.drift.checks import CHECKS_BY_NAME
from minielm.drift.monitor import DriftResult
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


def trigger_retraining(result: DriftResult, settings: Settings) -> dict[str, Any]:
    """Start the RL retraining pipeline when the decision says so; returns what happened."""
    trigger, reason = retraining_decision(result, settings)
    outcome: dict[str, Any] = {"triggered": trigger, "reason": reason, "pipeline": RETRAINING_PIPELINE}
    if not trigger:
        return outcome
    from pipelines.registry import compile_pipeline, load_pipeline

    module = load_pipeline(RETRAINING_PIPELINE)
    log.info("drift triggers retraining", reason=reason, run_id=result.run_id)
    if settings.pipelines.kfp_host:
        import kfp

        client = kfp.Client(host=settings.pipelines.kfp_host)
        run = client.create_run_from_pipeline_package(
            str(compile_pipeline(RETRAINING_PIPELINE)),
            arguments=module.default_arguments(settings),
            experiment_name=settings.pipelines.experiment,
            run_name=f"minielm-{RETRAINING_PIPELINE}-drift-{result.run_id}",
        )
        outcome.update(mode="kfp", kfp_run_id=run.run_id)
    else:
        outcome.update(mode="local", result=module.run_local(settings))
    return outcome
