"""The drift job on the real embedded S3: windows in the aggregator's layout, reference selection and
pinning, uploaded report and latest summary, "no data" for an empty prefix, the demo step, and the
one-command model rollback."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from minielm.drift import simulate
from minielm.drift.job import run_drift_job
from minielm.drift.sources import pin_reference, select_windows
from minielm.feedback.windows import WINDOW_COLUMNS, encode_frame, object_key
from tests.unit.drift_fixtures import current_window, encoder, reference_window

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]
TOPIC = "minielm.rewrites"


def _settings(live, tmp_path, prefix, *checks):
    drift = live.drift.model_copy(
        update={
            "reference_windows": 2,
            "current_windows": 2,
            "embedding_sample_size": 300,
            "reference_pointer_key": f"{prefix}/reference.json",
            "reports_prefix": f"{prefix}/reports",
            **({"checks": list(checks)} if checks else {}),
        }
    )
    feedback = live.feedback.model_copy(update={"windows_prefix": f"{prefix}/windows"})
    paths = live.paths.model_copy(update={"reports_dir": tmp_path / "reports", "state_dir": tmp_path / "state"})
    return live.model_copy(update={"drift": drift, "feedback": feedback, "paths": paths})


def _write_windows(store, settings, frames):
    """Each frame becomes one window object of partition 0, in offset order."""
    keys, offset = [], 0
    for frame in frames:
        key = object_key(settings.feedback.windows_prefix, TOPIC, 0, offset, offset + len(frame) - 1)
        frame = frame.assign(feedback_events=0)
        store.put_bytes(key, encode_frame(frame, WINDOW_COLUMNS))
        keys.append(key)
        offset += len(frame)
    return keys


@pytest.fixture()
def drift_env(embedded_services, object_store, tmp_path):
    prefix = f"drift-it-{uuid.uuid4().hex[:8]}"
    return _settings(embedded_services, tmp_path, prefix, "outcomes", "rewrites", "descriptors"), object_store


def test_job_reads_windows_from_s3_and_uploads_report_and_summary(drift_env):
    settings, store = drift_env
    reference = reference_window()
    collapsed = simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1)
    keys = _write_windows(
        store, settings, [reference.iloc[:300], reference.iloc[300:], collapsed.iloc[:300], collapsed.iloc[300:]]
    )
    selection = select_windows(store, settings)
    assert selection.reference_keys == keys[:2] and selection.current_keys == keys[2:]
    result = run_drift_job(settings, store=store)
    assert result.status == "drift" and "ctr" in {c.name for c in result.drifted}
    assert result.reference_rows == 600 and result.current_rows == 600
    assert store.exists(result.outputs["report_key"])
    assert result.outputs["report_url"] == f"s3://{store.bucket}/{result.outputs['report_key']}"
    latest = store.get_json(f"{settings.drift.reports_prefix}/latest.json")
    assert latest["run_id"] == result.run_id and latest["status"] == "drift"
    assert store.get_bytes(f"{settings.drift.reports_prefix}/{result.run_id}/metrics.prom").startswith(b"# HELP")

    # Pinning the same-distribution windows as reference: the collapse is still found, and the
    # current window no longer includes the pinned ones.
    pin_reference(store, settings, keys[:1], reason="test")
    pinned = select_windows(store, settings)
    assert pinned.reference_keys == keys[:1] and keys[0] not in pinned.current_keys
    assert pinned.reference_origin.startswith("pinned")


def test_no_windows_is_no_data_naming_the_prefix(drift_env):
    settings, store = drift_env
    result = run_drift_job(settings, store=store)
    assert result.status == "no_data"
    assert f"no feedback windows under s3://{store.bucket}/{settings.feedback.windows_prefix}/" in result.missing[0]
    assert json.loads(open(result.outputs["summary_path"]).read())["status"] == "no_data"
    assert "NO DATA" in open(result.outputs["report_path"]).read()


def test_pinned_reference_that_was_deleted_is_no_data(drift_env):
    settings, store = drift_env
    keys = _write_windows(store, settings, [reference_window(), current_window(1)])
    pin_reference(store, settings, keys[:1])
    store.delete(keys[0])
    result = run_drift_job(settings, store=store)
    assert result.status == "no_data"
    assert "does not exist" in result.missing[0]


@pytest.mark.slow
def test_demo_step_checks_windows_and_records_the_summary(drift_env, tmp_path):
    from minielm.demo import DemoContext
    from minielm.demo.artifacts import DemoArtifacts
    from minielm.demo.drift_step import drift_demo_step

    settings, store = drift_env
    settings = settings.model_copy(
        update={
            "drift": settings.drift.model_copy(
                update={
                    "checks": ["embeddings", "descriptors", "outcomes", "rewrites"],
                    "embedding_cache": False,
                    "embedding_threads": 1,
                }
            )
        }
    )
    encoder()  # without a cache file the job uses the session's encoder and its vectors
    keys = _write_windows(
        store, settings, [reference_window(), simulate.with_language_mix(current_window(1), 0.3, seed=1)]
    )
    lines = []
    ctx = DemoContext(
        settings=settings,
        workdir=tmp_path,
        store=store,
        artifacts=DemoArtifacts(feedback_window_keys=keys),
        echo=lines.append,
    )
    drift_demo_step(ctx)
    summary = ctx.artifacts.drift_summary
    assert summary["status"] == "drift" and "query_embeddings" in summary["drifted_checks"]
    assert any(line.strip().startswith("HTML report:") for line in lines)


def test_model_rollback_command_moves_production_back(embedded_services, object_store, tmp_path):
    from minielm.cli import app
    from minielm.registry import ModelRegistry

    registry = ModelRegistry(object_store)
    name = f"drift-rollback-{uuid.uuid4().hex[:6]}"
    versions = []
    for text in ("first", "second"):
        folder = tmp_path / text
        folder.mkdir()
        (folder / "weights.txt").write_text(text)
        versions.append(registry.register(name, folder).version)
        registry.promote(name, versions[-1], "production")
    s3 = embedded_services.s3
    env = {
        "MINIELM_S3__ENDPOINT_URL": s3.endpoint_url,
        "MINIELM_S3__BUCKET": s3.bucket,
        "AWS_ACCESS_KEY_ID": s3.access_key_id.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
    }
    result = CliRunner().invoke(app, ["model", "rollback", name], env=env)
    assert result.exit_code == 0, result.output
    assert registry.stage(name, "production").version == versions[0]
    again = CliRunner().invoke(app, ["model", "rollback", name], env=env)
    assert again.exit_code == 2 and "no previous version" in again.output


@pytest.mark.slow
def test_drift_pipeline_runs_locally_with_kfp(drift_env):
    from pipelines import drift_monitoring

    settings, store = drift_env
    _write_windows(
        store,
        settings,
        [
            reference_window(),
            reference_window(),
            simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1),
            current_window(2),
        ],
    )
    summary = drift_monitoring.run_local(settings)
    assert summary["status"] == "drift" and "ctr" in summary["drifted_checks"]
    assert store.exists(f"{settings.drift.reports_prefix}/{summary['run_id']}/report.html")
    assert summary["retraining"]["triggered"] is False
