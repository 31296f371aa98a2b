"""The drift job end to end: read windows, check, write the report and summary, tell on-call, maybe retrain.

Outputs of one run (``<out_dir>/<run_id>/``, mirrored to ``s3://<bucket>/<drift.reports_prefix>/<run_id>/``):
``report.html`` (the Evidently report, self-contained), ``summary.json`` (status, every check's score
and threshold, what is missing, links) and ``metrics.prom`` (Prometheus textfile). The latest
summary is also written to ``<drift.reports_prefix>/latest.json``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from minielm.config import Settings
from minielm.drift import alerts
from minielm.drift.descriptors import catalog_vocabulary
from minielm.drift.embeddings import QueryEncoder, shared_encoder
from minielm.drift.monitor import DriftResult, run_drift
from minielm.drift.retrain import Submitter, trigger_retraining
from minielm.drift.sources import read_keys, select_windows
from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.storage import ObjectNotFound, ObjectStore

log = get_logger(__name__)


class DriftInputError(InputError):
    """A drift setting or argument is unusable; the message names it."""


def _describe(keys: list[str]) -> str:
    if not keys:
        return "no window objects"
    return f"{len(keys)} window object(s), {keys[0]}" + (f" .. {keys[-1]}" if len(keys) > 1 else "")


def load_windows(
    store: ObjectStore, settings: Settings, reference_keys: list[str] | None, current_keys: list[str] | None
) -> dict[str, Any]:
    """Reference and current frames from S3 (None where absent) with labels and a reason when missing."""
    selection = None
    if reference_keys is None or current_keys is None:
        selection = select_windows(store, settings)
    ref_keys = reference_keys if reference_keys is not None else selection.reference_keys
    cur_keys = current_keys if current_keys is not None else selection.current_keys
    missing_reason = selection.problem if selection is not None and reference_keys is None else None
    frames: dict[str, Any] = {
        "reference_label": _describe(ref_keys),
        "current_label": _describe(cur_keys),
        "missing_reference_reason": missing_reason,
    }
    for name, keys in (("reference", ref_keys), ("current", cur_keys)):
        try:
            frames[name] = read_keys(store, keys)
        except ObjectNotFound as error:
            frames[name] = None
            if name == "reference":
                frames["missing_reference_reason"] = f"reference window object {error.args[0]} does not exist"
    if not ref_keys and frames["missing_reference_reason"] is None:
        frames["missing_reference_reason"] = "reference: no window keys were given"
    return frames


def job_encoder(settings: Settings) -> QueryEncoder:
    """The process-wide encoder, with its vectors kept under the state dir when drift.embedding_cache is on."""
    config = settings.drift
    cache = Path(settings.paths.state_dir) / "drift" / "embedding-cache.npz" if config.embedding_cache else None
    return shared_encoder(config.embedding_model_path, config.embedding_batch_size, cache, config.embedding_threads)


def resolve_vocabulary(settings: Settings, catalog_path: Path | None) -> tuple[frozenset[str] | None, str | None]:
    path = catalog_path or settings.drift.catalog_path
    if path is None:
        return None, None
    try:
        return catalog_vocabulary(Path(path)), f"catalog {path}"
    except (FileNotFoundError, ValueError) as error:
        raise DriftInputError(str(error)) from None


def _no_data_html(result: DriftResult) -> str:
    items = "".join(f"<li>{html.escape(item)}</li>" for item in result.missing)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>MiniELM drift {result.run_id}: no data"
        f"</title></head><body><h1>Drift run {html.escape(result.run_id)}: NO DATA</h1>"
        f"<p>No check could run. What is missing:</p><ul>{items}</ul></body></html>"
    )


def _report_url(settings: Settings, store: ObjectStore | None, key: str) -> str:
    if settings.drift.report_base_url:
        relative = key.removeprefix(settings.drift.reports_prefix + "/")
        return f"{settings.drift.report_base_url.rstrip('/')}/{relative}"
    bucket = store.bucket if store is not None else settings.s3.bucket
    return f"s3://{bucket}/{key}"


def write_outputs(
    result: DriftResult, snapshot, settings: Settings, out_dir: Path, store: ObjectStore | None
) -> dict[str, str]:
    """The HTML report, the metrics textfile and (re)the summary, locally and on S3."""
    run_dir = Path(out_dir) / result.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    report = run_dir / "report.html"
    if snapshot is not None:
        snapshot.save_html(str(report))
    else:
        report.write_text(_no_data_html(result), encoding="utf-8")
    outputs = {
        "report_path": str(report),
        "summary_path": str(run_dir / "summary.json"),
        "metrics_path": str(run_dir / "metrics.prom"),
    }
    prefix = f"{settings.drift.reports_prefix}/{result.run_id}"
    if store is not None and settings.drift.upload_report:
        store.put_bytes(f"{prefix}/report.html", report.read_bytes(), "text/html; charset=utf-8")
        outputs["report_key"] = f"{prefix}/report.html"
        outputs["report_url"] = _report_url(settings, store, outputs["report_key"])
    else:
        outputs["report_url"] = report.resolve().as_uri()
    result.outputs.update(outputs)
    alerts.write_metrics(result, Path(outputs["metrics_path"]))
    return outputs


def write_summary(result: DriftResult, settings: Settings, store: ObjectStore | None) -> dict[str, Any]:
    summary = result.to_dict()
    Path(result.outputs["summary_path"]).write_text(json.dumps(summary, indent=2, default=str))
    if store is not None and settings.drift.upload_report:
        prefix = settings.drift.reports_prefix
        store.put_json(f"{prefix}/{result.run_id}/summary.json", summary)
        store.put_bytes(
            f"{prefix}/{result.run_id}/metrics.prom",
            Path(result.outputs["metrics_path"]).read_bytes(),
            "text/plain; version=0.0.4",
        )
        store.write_pointer(f"{prefix}/latest.json", summary)
    return summary


def run_drift_job(
    settings: Settings,
    *,
    store: ObjectStore | None = None,
    out_dir: Path | None = None,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    reference_keys: list[str] | None = None,
    current_keys: list[str] | None = None,
    reference_label: str = "",
    current_label: str = "",
    catalog_path: Path | None = None,
    use_windows: bool = True,
    encoder: QueryEncoder | None = None,
    show_progress: bool = False,
    submit_retraining: Submitter | None = None,
) -> DriftResult:
    """Check drift, write the outputs, send alerts and metrics, and trigger retraining if configured.

    Frames given directly are used as they are; otherwise windows are read from S3 (``use_windows``).
    ``submit_retraining`` starts the retraining pipeline when drift triggers it (see ``minielm.drift.retrain``).
    """
    out_dir = Path(out_dir or Path(settings.paths.reports_dir) / "drift")
    missing_reason = None
    if use_windows and (reference is None or current is None):
        store = store or ObjectStore(settings.s3)
        loaded = load_windows(store, settings, reference_keys, current_keys)
        if reference is None:
            reference, reference_label = loaded["reference"], loaded["reference_label"]
            missing_reason = loaded["missing_reference_reason"]
        if current is None:
            current, current_label = loaded["current"], loaded["current_label"]
    vocabulary, vocabulary_source = resolve_vocabulary(settings, catalog_path)
    encoder = encoder or job_encoder(settings)
    result, snapshot = run_drift(
        reference,
        current,
        settings.drift,
        seed=settings.seed,
        vocabulary=vocabulary,
        vocabulary_source=vocabulary_source,
        encoder=encoder,
        reference_label=reference_label,
        current_label=current_label,
        missing_reference_reason=missing_reason,
        show_progress=show_progress,
    )
    encoder.save()
    write_outputs(result, snapshot, settings, out_dir, store)
    if alerts.push_metrics(result, settings.drift):
        result.outputs["pushgateway"] = settings.drift.pushgateway_url or ""
    sent = alerts.send_webhook(result, settings.drift)
    result.outputs["alerts_sent"] = str(0 if sent is None else len(sent["alerts"]))
    result.retraining = trigger_retraining(result, settings, submit_retraining)
    write_summary(result, settings, store)
    return result
