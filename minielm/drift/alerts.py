"""How a drift result reaches on-call: Prometheus gauges and an Alertmanager-compatible webhook.

Gauges (names fixed with the chart's PrometheusRule): ``minielm_drift_score{check}``,
``minielm_drift_detected{check}`` (0/1), ``minielm_drift_last_run_timestamp_seconds``, and
``minielm_drift_no_data{check}`` (0/1) so a check that could not run is visible, not silent, and
``minielm_drift_report_info{run_id,report_url}`` so the chart's alerts can link the latest report.
They are written as a node-exporter textfile next to the report and pushed to a Pushgateway when
``drift.pushgateway_url`` is set.

The webhook body is the Alertmanager webhook format (version 4), one alert per drifted check plus
one ``MiniELMDriftNoData`` alert naming what is missing; every alert carries the check, score,
threshold, report link and runbook section in its labels and annotations.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from minielm.config import DriftConfig
from minielm.drift.monitor import CheckResult, DriftResult
from minielm.logs import get_logger

log = get_logger(__name__)

DRIFT_ALERT = "MiniELMDriftDetected"
NO_DATA_ALERT = "MiniELMDriftNoData"


def metrics_registry(result: DriftResult) -> CollectorRegistry:
    registry = CollectorRegistry()
    score = Gauge(
        "minielm_drift_score",
        "Drift score of a check (higher means more drift; NaN when no data)",
        ["check"],
        registry=registry,
    )
    detected = Gauge("minielm_drift_detected", "1 when the check's Evidently test failed", ["check"], registry=registry)
    no_data = Gauge(
        "minielm_drift_no_data", "1 when the check could not run for lack of data", ["check"], registry=registry
    )
    last_run = Gauge("minielm_drift_last_run_timestamp_seconds", "When the drift job last finished", registry=registry)
    for check in result.checks:
        score.labels(check=check.name).set(float("nan") if check.score is None else check.score)
        detected.labels(check=check.name).set(1 if check.status == "drift" else 0)
        no_data.labels(check=check.name).set(1 if check.status == "no_data" else 0)
    last_run.set(result.started_at + result.duration_s)
    # Prometheus alerts cannot carry a URL from a gauge value: the link travels as a label here and
    # the PrometheusRule's annotations read it back with a query.
    report = Gauge(
        "minielm_drift_report_info",
        "1, labelled with the latest drift run's id and the link to its HTML report",
        ["run_id", "report_url"],
        registry=registry,
    )
    report.labels(run_id=result.run_id, report_url=result.outputs.get("report_url", "")).set(1)
    return registry


def write_metrics(result: DriftResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), metrics_registry(result))
    return path


def push_metrics(result: DriftResult, config: DriftConfig) -> bool:
    if not config.pushgateway_url:
        return False
    push_to_gateway(config.pushgateway_url, job=config.pushgateway_job, registry=metrics_registry(result))
    return True


def runbook_link(config: DriftConfig, section: str) -> str:
    return f"{config.runbook_url}#{section}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _alert(labels: dict[str, str], annotations: dict[str, str], starts_at: float, link: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(starts_at),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": link,
        "fingerprint": _fingerprint(labels),
    }


def _check_alert(check: CheckResult, result: DriftResult, config: DriftConfig) -> dict[str, Any]:
    report = result.outputs.get("report_url", "")
    score = "n/a" if check.score is None else f"{check.score:.4f}"
    labels = {
        "alertname": DRIFT_ALERT,
        "check": check.name,
        "family": check.family,
        "severity": "warning",
        "service": "minielm",
    }
    annotations = {
        "summary": f"Drift in {check.name}: score {score} > threshold {check.threshold:.4f}",
        "description": f"{check.what}. {check.detail}".strip(),
        "check": check.name,
        "score": score,
        "threshold": f"{check.threshold:.4f}",
        "report_url": report,
        "runbook_url": runbook_link(config, check.runbook_section),
        "runbook_section": check.runbook_section,
        "run_id": result.run_id,
    }
    return _alert(labels, annotations, result.started_at, report)


def _no_data_alert(result: DriftResult, config: DriftConfig) -> dict[str, Any]:
    report = result.outputs.get("report_url", "")
    labels = {
        "alertname": NO_DATA_ALERT,
        "check": ",".join(c.name for c in result.no_data) or "all",
        "severity": "warning",
        "service": "minielm",
    }
    annotations = {
        "summary": f"Drift job could not run {len(result.no_data)} check(s): no data",
        "description": "; ".join(result.missing),
        "check": labels["check"],
        "score": "n/a",
        "threshold": "n/a",
        "report_url": report,
        "runbook_url": runbook_link(config, "no-data"),
        "runbook_section": "no-data",
        "run_id": result.run_id,
    }
    return _alert(labels, annotations, result.started_at, report)


def webhook_payload(result: DriftResult, config: DriftConfig) -> dict[str, Any] | None:
    """The Alertmanager webhook body for this result (None when nothing fires)."""
    alerts = [_check_alert(c, result, config) for c in result.drifted]
    if result.no_data:
        alerts.append(_no_data_alert(result, config))
    if not alerts:
        return None
    common = {"service": "minielm", "severity": "warning"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{service="minielm", run="{result.run_id}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "minielm-drift",
        "groupLabels": {"service": "minielm"},
        "commonLabels": common,
        "commonAnnotations": {
            "report_url": result.outputs.get("report_url", ""),
            "runbook_url": runbook_link(config, "drift-alerts"),
        },
        "externalURL": result.outputs.get("report_url", ""),
        "alerts": alerts,
    }


def send_webhook(result: DriftResult, config: DriftConfig) -> dict[str, Any] | None:
    """POST the payload to ``drift.webhook_url``; returns what was sent (None if nothing fired or no URL)."""
    payload = webhook_payload(result, config)
    if payload is None or not config.webhook_url:
        return None
    response = httpx.post(config.webhook_url, json=payload, timeout=config.webhook_timeout_s)
    response.raise_for_status()
    log.info("drift alert sent", url=config.webhook_url, alerts=len(payload["alerts"]), status=response.status_code)
    return payload
