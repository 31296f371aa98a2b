"""What a drift run leaves behind and who hears about it: files, Prometheus gauges, the Alertmanager webhook
(received by a real HTTP server on 127.0.0.1), the retraining decision, the CLI, the compiled pipeline."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from minielm.config import load_settings
from minielm.drift import simulate
from minielm.drift.alerts import webhook_payload
from minielm.drift.checks import CHECKS
from minielm.drift.job import run_drift_job
from minielm.drift.monitor import run_drift
from minielm.drift.retrain import retraining_decision
from tests.unit.drift_fixtures import current_window, drift_config, reference_window

pytestmark = pytest.mark.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[2]
# Outcome and rewrite checks only: these tests are about outputs, not about embeddings.
FAST = ["drift.checks=[outcomes, rewrites]", "drift.upload_report=false"]


def settings_with(tmp_path, *overrides):
    return load_settings(
        overrides=[f"paths.state_dir={tmp_path}/state", f"paths.reports_dir={tmp_path}/reports", *FAST, *overrides],
        environ={},
        use_services_state=False,
    )


class Receiver:
    """A real HTTP server on 127.0.0.1 that records the requests it gets."""

    def __init__(self):
        self.requests: list[tuple[str, str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append((self.command, self.path, body))
                self.send_response(200)
                self.end_headers()

            do_POST = do_PUT = _record

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_run_writes_report_summary_and_metrics(tmp_path):
    settings = settings_with(tmp_path)
    current = simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1)
    result = run_drift_job(settings, reference=reference_window(), current=current, use_windows=False)
    run_dir = tmp_path / "reports" / "drift" / result.run_id
    assert {p.name for p in run_dir.iterdir()} == {"report.html", "summary.json", "metrics.prom"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "drift" and "ctr" in summary["drifted_checks"]
    assert summary["retraining"] == {
        "triggered": False,
        "reason": "drift.trigger_retraining is off",
        "pipeline": "rl_retraining",
    }
    samples = {
        (s.name, s.labels.get("check")): s.value
        for family in text_string_to_metric_families((run_dir / "metrics.prom").read_text())
        for s in family.samples
    }
    assert samples[("minielm_drift_detected", "ctr")] == 1
    assert samples[("minielm_drift_detected", "zero_result_rate")] == 0
    assert samples[("minielm_drift_score", "ctr")] == pytest.approx(result.checks[0].score)
    assert samples[("minielm_drift_last_run_timestamp_seconds", None)] >= result.started_at
    assert (run_dir / "report.html").stat().st_size > 100_000


def test_webhook_reaches_a_receiver_with_check_score_threshold_report_and_runbook(tmp_path):
    current = simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1).drop(columns=["n_results"])
    with Receiver() as receiver:
        settings = settings_with(
            tmp_path,
            f"drift.webhook_url={receiver.url}/alerts",
            f"drift.pushgateway_url={receiver.url}",
            "drift.runbook_url=https://git.example/minielm/docs/runbook.md",
        )
        result = run_drift_job(settings, reference=reference_window(), current=current, use_windows=False)
    paths = [(method, path) for method, path, _ in receiver.requests]
    assert ("POST", "/alerts") in paths
    assert ("PUT", "/metrics/job/minielm-drift") in paths
    body = json.loads(next(b for m, p, b in receiver.requests if p == "/alerts"))
    assert body["version"] == "4" and body["status"] == "firing"
    by_check = {a["labels"]["check"]: a for a in body["alerts"] if a["labels"]["alertname"] == "MiniELMDriftDetected"}
    assert set(by_check) == {c.name for c in result.drifted}
    ctr = by_check["ctr"]["annotations"]
    assert ctr["check"] == "ctr" and float(ctr["threshold"]) == settings.drift.ctr_tolerance
    assert float(ctr["score"]) > float(ctr["threshold"])
    assert ctr["runbook_url"] == "https://git.example/minielm/docs/runbook.md#outcomes"
    assert ctr["report_url"].endswith(f"{result.run_id}/report.html")
    no_data = [a for a in body["alerts"] if a["labels"]["alertname"] == "MiniELMDriftNoData"]
    assert len(no_data) == 1 and "['n_results']" in no_data[0]["annotations"]["description"]
    pushed = next(b for m, p, b in receiver.requests if m == "PUT").decode()
    assert 'minielm_drift_detected{check="ctr"} 1.0' in pushed


def test_no_alert_payload_when_nothing_drifted():
    result, _ = run_drift(reference_window(), current_window(2), drift_config(checks=["outcomes", "rewrites"]))
    assert result.status == "ok"
    assert webhook_payload(result, drift_config()) is None


@pytest.mark.parametrize(
    "overrides, status, expected",
    [
        ([], "drift", (False, "drift.trigger_retraining is off")),
        (["drift.trigger_retraining=true"], "ok", (False, "no drift detected (status ok)")),
        (["drift.trigger_retraining=true"], "no_data", (False, "no drift detected (status no_data)")),
        (["drift.trigger_retraining=true"], "drift", (True, "drift in ['ctr']")),
        (
            ["drift.trigger_retraining=true", "drift.retraining_checks=[query_embeddings]"],
            "drift",
            (False, "drifted checks ['ctr'] are not among drift.retraining_checks"),
        ),
        (["drift.trigger_retraining=true", "drift.retraining_checks=[ctr]"], "drift", (True, "drift in ['ctr']")),
    ],
)
def test_retraining_decision(tmp_path, overrides, status, expected):
    from minielm.drift.monitor import CheckResult, DriftResult

    checks = [CheckResult("ctr", "outcomes", "drift" if status == "drift" else "ok", 0.3, 0.1, "", "outcomes")]
    result = DriftResult("run", status, checks, [], 100, 100)
    assert retraining_decision(result, settings_with(tmp_path, *overrides)) == expected


def test_unknown_retraining_check_is_named(tmp_path):
    from minielm.drift.monitor import DriftResult

    with pytest.raises(ValueError, match=r"drift.retraining_checks: unknown check\(s\) \['ctrr'\]"):
        retraining_decision(
            DriftResult("run", "drift", [], [], 1, 1), settings_with(tmp_path, "drift.retraining_checks=[ctrr]")
        )


def test_every_check_and_alert_has_a_runbook_section():
    text = (REPO / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    needed = {c.runbook_section for c in CHECKS} | {
        "no-data",
        "drift-alerts",
        "retrain",
        "rollback",
        "widen-reference",
        "silence",
    }
    assert needed <= anchors
    # Every section the chart's PrometheusRule links to exists too.
    rules = (REPO / "helm" / "minielm" / "templates" / "monitoring.yaml").read_text()
    assert set(re.findall(r'"%s#([a-z0-9-]+)"', rules)) <= anchors
    for check in CHECKS:
        assert f"`{check.name}`" in text


def test_cli_check_on_local_files_and_exit_codes(tmp_path):
    from minielm.cli import app

    reference, current = tmp_path / "reference.parquet", tmp_path / "current.parquet"
    reference_window().to_parquet(reference)
    simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1).to_parquet(current)
    base = ["--set", f"paths.reports_dir={tmp_path}/reports", "--set", FAST[0], "--set", FAST[1]]
    runner = CliRunner()
    ok = runner.invoke(
        app, [*base, "drift", "check", "--reference-file", str(reference), "--current-file", str(reference)]
    )
    assert ok.exit_code == 0, ok.output
    assert "drift status: OK" in ok.output
    drifted = runner.invoke(
        app,
        [
            *base,
            "drift",
            "check",
            "--reference-file",
            str(reference),
            "--current-file",
            str(current),
            "--fail-on-drift",
        ],
    )
    assert drifted.exit_code == 1
    assert re.search(r"drift\s+ctr\s+score", drifted.output)
    missing = runner.invoke(
        app,
        [*base, "drift", "check", "--reference-file", str(tmp_path / "nope.parquet"), "--current-file", str(current)],
    )
    assert missing.exit_code == 2 and "--reference-file" in missing.output
    bad_config = runner.invoke(app, [*base, "--set", "drift.embedding_method=tsne", "drift", "check"])
    assert bad_config.exit_code == 2 and "drift.embedding_method" in bad_config.output


def test_cli_model_rollback_rejects_an_unknown_stage():
    from minielm.cli import app

    result = CliRunner().invoke(app, ["model", "rollback", "student-rewriter", "--stage", "staging"])
    assert result.exit_code == 2 and "--stage" in result.output


def test_compiled_pipeline_matches_the_code(tmp_path):
    from pipelines.registry import compile_pipeline, compiled_path

    fresh = compile_pipeline("drift_monitoring", tmp_path)
    assert fresh.read_text() == compiled_path("drift_monitoring").read_text()


def test_demo_step_falls_back_to_the_dataset_splits(tmp_path):
    from minielm.data.esci import write_esci
    from minielm.demo import DemoContext
    from minielm.demo.artifacts import DemoArtifacts
    from minielm.demo.drift_step import drift_demo_step
    from tests.unit.drift_fixtures import dataset, encoder

    encoder()  # without a cache file the job uses the session's encoder and its vectors
    write_esci(dataset(0), tmp_path / "dataset")
    settings = settings_with(tmp_path, "drift.embedding_cache=false", "drift.embedding_threads=1")
    lines = []
    ctx = DemoContext(
        settings=settings,
        workdir=tmp_path,
        store=None,
        echo=lines.append,
        artifacts=DemoArtifacts(dataset_dir=tmp_path / "dataset"),
    )
    drift_demo_step(ctx)
    summary = ctx.artifacts.drift_summary
    assert summary["reference_label"] == "train split" and summary["vocabulary_source"].startswith("catalog")
    assert {c["family"] for c in summary["checks"]} == {"embeddings", "descriptors", "rewrites"}
    assert all(c["status"] != "no_data" for c in summary["checks"])
    assert any("HTML report:" in line for line in lines)
    assert Path(summary["outputs"]["report_path"]).is_file()
