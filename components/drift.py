"""KFP component of the drift monitoring pipeline: a thin wrapper over ``minielm.drift.job.run_drift_job``
(no ``from __future__ import annotations``: KFP reads the real annotation objects).

It reads the platform settings from ``config_file`` (empty: ``$MINIELM_CONFIG`` and ``MINIELM_*``
variables; on a cluster the settings ConfigMap mounted by ``pipelines.platform``), fetches the
catalog from its s3:// URI (if any), writes the HTML report as an output artifact and the per-check
scores as KFP metrics, and returns the overall status (ok, drift, no_data).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from minielm.config import JOBS_IMAGE


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def drift_check(
    config_file: str,
    reference_keys: str,
    current_keys: str,
    catalog_uri: str,
    report: Output[HTML],
    metrics: Output[Metrics],
) -> NamedTuple("DriftOutputs", [("status", str), ("drifted_checks", str), ("summary", str)]):
    """Reference vs current feedback windows -> Evidently report, summary, Prometheus metrics, alerts."""
    import json
    import shutil
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.drift.job import run_drift_job
    from minielm.s3_uris import fetch
    from pipelines.submit import retraining_submitter

    settings = load_settings(config_file or None)
    catalog = fetch(catalog_uri, Path(tempfile.mkdtemp(prefix="catalog-")), settings.s3) if catalog_uri else None
    result = run_drift_job(
        settings,
        out_dir=Path(tempfile.mkdtemp(prefix="drift-")),
        reference_keys=[k for k in reference_keys.split(",") if k] or None,
        current_keys=[k for k in current_keys.split(",") if k] or None,
        catalog_path=catalog,
        submit_retraining=retraining_submitter(settings),
    )
    shutil.copyfile(result.outputs["report_path"], report.path)
    for check in result.checks:
        if check.score is not None:
            metrics.log_metric(f"drift_score_{check.name}", check.score)
    metrics.log_metric("drifted_checks", len(result.drifted))
    summary = json.dumps(
        {
            "status": result.status,
            "run_id": result.run_id,
            "drifted_checks": [c.name for c in result.drifted],
            "missing": result.missing,
            "report_url": result.outputs.get("report_url", ""),
            "retraining": result.retraining,
        },
        default=str,
    )
    return namedtuple("DriftOutputs", ["status", "drifted_checks", "summary"])(
        result.status, ",".join(c.name for c in result.drifted), summary
    )
