"""The recurring drift monitoring pipeline: feedback windows -> Evidently checks -> report, metrics, alerts.

One step (``components.drift.drift_check``); drift-triggered retraining happens inside it when
``drift.trigger_retraining`` is on (it submits the ``rl_retraining`` pipeline). The schedule is
``pipelines.drift_monitoring_cron`` (``minielm pipeline schedule drift_monitoring``). The pipeline's
output is the run summary as JSON.
"""

from kfp import dsl

from components.drift import drift_check
from minielm.config import Settings
from pipelines.local_run import run_locally

NAME = "drift_monitoring"


@dsl.pipeline(
    name="minielm-drift-monitoring",
    description="Semantic, descriptor, outcome and rewrite-behaviour drift of served traffic with "
    "Evidently; HTML report, Prometheus metrics, Alertmanager webhook, optional retraining.",
)
def pipeline_func(
    config_file: str = "", reference_keys: str = "", current_keys: str = "", catalog_path: str = ""
) -> str:
    check = drift_check(
        config_file=config_file, reference_keys=reference_keys, current_keys=current_keys, catalog_path=catalog_path
    )
    return check.outputs["summary"]


def default_arguments(settings: Settings) -> dict:
    """Windows chosen by the job (pinned or oldest reference, newest current); catalog from drift settings."""
    return {
        "reference_keys": "",
        "current_keys": "",
        "catalog_path": str(settings.drift.catalog_path) if settings.drift.catalog_path else "",
    }


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (a subprocess per task) against the configured services."""
    return run_locally(pipeline_func, NAME, settings, default_arguments(settings), params, "drift", takes_run_id=False)
