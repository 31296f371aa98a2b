"""The recurring drift monitoring pipeline: feedback windows -> Evidently checks -> report, metrics, alerts.

One step (``components.drift.drift_check``); drift-triggered retraining happens inside it when
``drift.trigger_retraining`` is on (it submits the ``rl_retraining`` pipeline). The schedule is
``pipelines.drift_monitoring_cron`` (``minielm pipeline schedule drift_monitoring``). The pipeline's
output is the run summary as JSON.
"""

import json
import os
import time
from pathlib import Path

from kfp import dsl

from components.drift import drift_check
from minielm.config import Settings

NAME = "drift_monitoring"


@dsl.pipeline(name="minielm-drift-monitoring",
              description="Semantic, descriptor, outcome and rewrite-behaviour drift of served traffic with "
                          "Evidently; HTML report, Prometheus metrics, Alertmanager webhook, optional retraining.")
def pipeline_func(config_file: str = "", reference_keys: str = "", current_keys: str = "",
                  catalog_path: str = "") -> str:
    check = drift_check(config_file=config_file, reference_keys=reference_keys, current_keys=current_keys,
                        catalog_path=catalog_path)
    return check.outputs["summary"]


def default_arguments(settings: Settings) -> dict:
    """Windows chosen by the job (pinned or oldest reference, newest current); catalog from drift settings."""
    return {"reference_keys": "", "current_keys": "",
            "catalog_path": str(settings.drift.catalog_path) if settings.drift.catalog_path else ""}


def write_settings_file(settings: Settings, path: Path) -> Path:
    """The live settings (secrets included) for the local task subprocess, readable by the owner only."""
    data = settings.model_dump(mode="json")
    for field in ("access_key_id", "secret_access_key"):
        secret = getattr(settings.s3, field)
        data["s3"][field] = secret.get_secret_value() if secret is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(data))
    return path


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (a subprocess per task) against the configured services."""
    from kfp import local

    run_id = time.strftime("drift-%Y%m%d-%H%M%S", time.gmtime())
    root = Path(settings.paths.runs_dir).resolve() / "kfp" / NAME
    config_file = params.pop("config_file", None) or str(write_settings_file(settings, root / run_id / "settings.json"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    arguments = {**default_arguments(settings), **params}
    try:
        task = pipeline_func(config_file=config_file, **arguments)
    finally:
        if config_file.startswith(str(root)):
            os.remove(config_file)
    return json.loads(task.output)
