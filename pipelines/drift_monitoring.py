"""The recurring drift monitoring pipeline: feedback windows -> Evidently checks -> report, metrics, alerts.

One step (``components.drift.drift_check``); drift-triggered retraining happens inside it when
``drift.trigger_retraining`` is on (it submits the ``rl_retraining`` pipeline). The schedule is
``pipelines.drift_monitoring_cron`` (``minielm pipeline schedule drift_monitoring``). The pipeline's
output is the run summary as JSON.
"""

from kfp import dsl

from components.drift import drift_check
from minielm.config import PipelinesConfig, Settings
from pipelines.local_run import run_locally
from pipelines.platform import deploy

NAME = "drift_monitoring"
# Parameters that name data: s3:// URIs on a cluster (checked before a run is submitted).
URI_PARAMETERS = ("catalog_uri",)


def build_pipeline(cluster: PipelinesConfig):
    """The pipeline, its task pod configured from ``cluster`` (image, settings, secrets, resources)."""

    @dsl.pipeline(
        name="minielm-drift-monitoring",
        description="Semantic, descriptor, outcome and rewrite-behaviour drift of served traffic with "
        "Evidently; HTML report, Prometheus metrics, Alertmanager webhook, optional retraining.",
    )
    def drift_monitoring(
        config_file: str = "", reference_keys: str = "", current_keys: str = "", catalog_uri: str = ""
    ) -> str:
        check = drift_check(
            config_file=config_file, reference_keys=reference_keys, current_keys=current_keys, catalog_uri=catalog_uri
        )
        deploy(check, cluster)
        return check.outputs["summary"]

    return drift_monitoring


def default_arguments(settings: Settings) -> dict:
    """Windows chosen by the job (pinned or oldest reference, newest current); catalog from drift settings."""
    return {
        "reference_keys": "",
        "current_keys": "",
        "catalog_uri": str(settings.drift.catalog_path) if settings.drift.catalog_path else "",
    }


def cluster_arguments(settings: Settings) -> dict:
    """Nothing beyond the pipeline's defaults: the job picks the windows, the catalog is a run parameter."""
    return {}


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (a subprocess per task) against the configured services."""
    return run_locally(
        build_pipeline(settings.pipelines),
        NAME,
        settings,
        default_arguments(settings),
        params,
        "drift",
        takes_run_id=False,
    )
