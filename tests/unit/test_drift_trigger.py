"""Drift-triggered retraining submits the rl_retraining pipeline through the submitter it is given; from a
read-only copy of the repository tree (as in the jobs image) it submits without writing into the tree."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from minielm.config import load_settings
from minielm.drift.monitor import CheckResult, DriftResult
from minielm.drift.retrain import RetrainingNotWired, trigger_retraining
from tests.kfp_fake_api import FakeKfp, serve

REPO = Path(__file__).resolve().parents[2]


def drifted() -> DriftResult:
    check = CheckResult("ctr", "outcomes", "drift", 0.4, 0.1, "click-through rate", "ctr")
    return DriftResult("drift-run-1", "drift", [check], [], 100, 100)


def test_trigger_calls_the_submitter_it_was_given(tmp_path):
    settings = load_settings(overrides=["drift.trigger_retraining=true", f"paths.state_dir={tmp_path}"], environ={})
    calls = []

    def submit(name, arguments, run_name):
        calls.append((name, arguments, run_name))
        return {"mode": "kfp", "run_id": "r1", "url": "http://kfp/#/runs/details/r1"}

    outcome = trigger_retraining(drifted(), settings, submit)
    assert calls == [("rl_retraining", {}, "minielm-rl_retraining-drift-drift-run-1")]
    assert outcome["triggered"] is True and outcome["run_id"] == "r1" and outcome["reason"] == "drift in ['ctr']"
    with pytest.raises(RetrainingNotWired, match="drift.trigger_retraining is on"):
        trigger_retraining(drifted(), settings)
    off = load_settings(overrides=[f"paths.state_dir={tmp_path}"], environ={})
    assert trigger_retraining(drifted(), off)["triggered"] is False


SUBMIT_FROM_TREE = """
import json, sys
import boto3
from moto import mock_aws
from minielm.config import load_settings
from minielm.drift.monitor import CheckResult, DriftResult
from minielm.drift.retrain import trigger_retraining
from pipelines.submit import retraining_submitter

host, state_dir = sys.argv[1], sys.argv[2]
with mock_aws():
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="datasets")
    client.put_object(Bucket="datasets", Key="esci/examples.parquet", Body=b"x")
    client.put_object(Bucket="datasets", Key="index/index.json", Body=b"x")
    settings = load_settings(overrides=[
        "drift.trigger_retraining=true", f"pipelines.kfp_host={host}", "pipelines.namespace=team-a",
        "pipelines.data_uri=s3://datasets/esci", "pipelines.index_uri=s3://datasets/index",
        "s3.endpoint_url=null", f"paths.state_dir={state_dir}",
    ])
    check = CheckResult("ctr", "outcomes", "drift", 0.4, 0.1, "click-through rate", "ctr")
    result = DriftResult("drift-run-1", "drift", [check], [], 100, 100)
    print(json.dumps(trigger_retraining(result, settings, retraining_submitter(settings))))
"""


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


@pytest.mark.slow
def test_trigger_submits_from_a_read_only_tree(tmp_path):
    tree = tmp_path / "app"
    for package in ("minielm", "pipelines", "components"):
        shutil.copytree(REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [tree, *tree.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    # Root ignores the mode bits, so the snapshot (every path and mtime) is what proves nothing was written.
    before = _snapshot(tree)
    fake = FakeKfp()
    server = serve(fake)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MINIELM_", "AWS_"))},
        "PYTHONPATH": str(tree),
        "MINIELM_KFP_TOKEN": "good-token",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", SUBMIT_FROM_TREE, fake.url, str(tmp_path / "state")],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.shutdown()
        for path in [tree, *tree.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert outcome["triggered"] is True and outcome["mode"] == "kfp"
    [run] = fake.runs.values()
    assert run["display_name"] == "minielm-rl_retraining-drift-drift-run-1"
    assert run["runtime_config"]["parameters"] == {"data_uri": "s3://datasets/esci", "index_uri": "s3://datasets/index"}
    assert fake.experiments[run["experiment_id"]]["namespace"] == "team-a"
    assert all(r["headers"]["Authorization"] == "Bearer good-token" for r in fake.requests)
    assert _snapshot(tree) == before, "the trigger wrote into the read-only tree"
