"""``minielm pipeline run|schedule`` against a fake KFP API over real HTTP: the request carries the namespace
and the token, the run URL is printed, ``--wait`` streams task states and exits 0/1, and each bad input is
one line naming the host, setting or URI, with nothing submitted."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from minielm.cli import app
from tests.kfp_fake_api import FakeKfp, serve

runner = CliRunner()


@pytest.fixture()
def kfp():
    fake = FakeKfp()
    server = serve(fake)
    yield fake
    server.shutdown()


@pytest.fixture()
def s3_data(monkeypatch, tmp_path):
    """Moto S3 (AWS mode) with an uploaded ESCI folder at s3://datasets/esci/v1."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="datasets")
        for name in ("examples.parquet", "products.parquet"):
            client.put_object(Bucket="datasets", Key=f"esci/v1/{name}", Body=b"x")
        client.put_object(Bucket="datasets", Key="esci/v1-index/index.json", Body=b"x")
        yield tmp_path


def invoke(*args, state_dir):
    base = ["--set", f"paths.state_dir={state_dir}", "--set", "s3.endpoint_url=null"]
    return runner.invoke(app, [*base, *args])


def test_run_submits_with_namespace_and_token_and_prints_the_url(kfp, s3_data):
    result = invoke(
        "pipeline",
        "run",
        "training",
        "--host",
        kfp.url,
        "--namespace",
        "team-a",
        "--existing-token",
        "good-token",
        "-p",
        "data_uri=s3://datasets/esci/v1",
        state_dir=s3_data,
    )
    assert result.exit_code == 0, result.output
    [run] = kfp.runs.values()
    assert f"{kfp.url}/#/runs/details/{run['run_id']}" in result.output
    assert all(r["headers"]["Authorization"] == "Bearer good-token" for r in kfp.requests)
    experiment = kfp.experiments[run["experiment_id"]]
    assert experiment["namespace"] == "team-a" and experiment["display_name"] == "minielm"
    assert run["runtime_config"]["parameters"] == {"data_uri": "s3://datasets/esci/v1"}
    spec = run["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "minielm-training"
    executors = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-validate-data"]["configMapAsVolume"][0]["configMapName"] == "minielm-settings"


def test_wait_streams_task_states_and_exits_with_the_final_state(kfp, s3_data, monkeypatch):
    monkeypatch.setattr("pipelines.submit.time.sleep", lambda s: None)
    monkeypatch.setenv("MINIELM_KFP_TOKEN", "good-token")
    args = ["pipeline", "run", "training", "--host", kfp.url, "-p", "data_uri=s3://datasets/esci/v1", "--wait"]
    result = invoke(*args, "-o", "json", state_dir=s3_data)
    assert result.exit_code == 0, result.output
    assert "validate-data: RUNNING" in result.output and "validate-data: SUCCEEDED" in result.output
    final = json.loads(result.stdout[result.stdout.index("{") :])
    assert final["state"] == "SUCCEEDED" and final["url"].endswith(final["run_id"])
    kfp.final_state = "FAILED"
    result = invoke(*args, state_dir=s3_data)
    assert result.exit_code == 1
    assert "FAILED" in result.output.splitlines()[-1]


def test_token_from_a_file(kfp, s3_data):
    token_file = s3_data / "token"
    token_file.write_text("good-token\n")
    result = invoke(
        "pipeline",
        "run",
        "training",
        "--host",
        kfp.url,
        "--token-file",
        str(token_file),
        "-p",
        "data_uri=s3://datasets/esci/v1",
        state_dir=s3_data,
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("extra", "code", "named"),
    [
        (["--existing-token", "bad-token"], 2, "refused the token"),
        (["--existing-token", "good-token", "--namespace", "nobody"], 2, "namespace 'nobody'"),
        (
            ["--existing-token", "good-token", "-p", "data_uri=s3://datasets/esci/missing"],
            2,
            "s3://datasets/esci/missing",
        ),
        (["--existing-token", "good-token", "-p", "data_uri=/home/me/esci"], 2, "data_uri"),
        (["--existing-token", "good-token", "-p", "data_uri=s3://no-bucket/x"], 2, "no-bucket"),
        (["--existing-token", "good-token", "-p", "nope=1"], 2, "nope"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_is_submitted(kfp, s3_data, extra, code, named):
    params = [] if any(a.startswith("data_uri") for a in extra) else ["-p", "data_uri=s3://datasets/esci/v1"]
    result = invoke("pipeline", "run", "training", "--host", kfp.url, *params, *extra, state_dir=s3_data)
    assert result.exit_code == code, result.output
    assert named in result.output
    assert not kfp.runs


def test_missing_data_parameter_names_the_setting(kfp, s3_data):
    result = invoke(
        "pipeline", "run", "training", "--host", kfp.url, "--existing-token", "good-token", state_dir=s3_data
    )
    assert result.exit_code == 2
    assert "data_uri" in result.output and "pipelines.data_uri" in result.output
    assert not kfp.requests


def test_unreachable_host_exits_1_naming_it(s3_data):
    host = "http://127.0.0.1:9"  # discard port: nothing listens
    result = invoke(
        "pipeline",
        "run",
        "training",
        "--host",
        host,
        "--existing-token",
        "t",
        "-p",
        "data_uri=s3://datasets/esci/v1",
        state_dir=s3_data,
    )
    assert result.exit_code == 1
    assert f"cannot reach KFP at {host}" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_schedule_replaces_the_recurring_run_with_the_same_credentials(kfp, s3_data):
    """Same endpoint, token and namespace as a run; the inputs need not exist yet (runs read them later)."""
    args = [
        "--set",
        "pipelines.data_uri=s3://datasets/esci/v1",
        "--set",
        "pipelines.index_uri=s3://datasets/esci/uploaded-later",
        "pipeline",
        "schedule",
        "rl_retraining",
        "--host",
        kfp.url,
        "--namespace",
        "team-a",
        "--existing-token",
        "good-token",
    ]
    first = invoke(*args, state_dir=s3_data)
    second = invoke(*args, state_dir=s3_data)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    [schedule] = kfp.recurring.values()
    assert schedule["display_name"] == "minielm-rl_retraining" and schedule["namespace"] == "team-a"
    assert schedule["trigger"] == {"cron_schedule": {"cron": "0 0 */6 * * *"}}
    assert schedule["runtime_config"]["parameters"]["data_uri"] == "s3://datasets/esci/v1"
    assert all(r["headers"]["Authorization"] == "Bearer good-token" for r in kfp.requests)
    # A schedule's inputs may be uploaded later, but they are S3 URIs.
    local = invoke(*args, "-p", "index_uri=/home/me/index", state_dir=s3_data)
    assert local.exit_code == 2 and "index_uri" in local.output


def test_run_help_shows_the_cluster_options():
    result = runner.invoke(app, ["pipeline", "run", "--help"])
    for option in ("--namespace", "--wait", "--output-format", "--existing-token", "--token-file"):
        assert option in result.output
