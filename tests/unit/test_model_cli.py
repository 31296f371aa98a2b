"""``minielm model list|rollback``: the registry on (moto) S3, the InferenceService through a fake API.

The fake stands in for the Kubernetes API server only (none can run here); the error paths are what
matter: an unreachable InferenceService changes nothing, a failed patch says how to finish by hand.
"""

from __future__ import annotations

import json

import pytest
from moto import mock_aws
from typer.testing import CliRunner

from minielm import rollout
from minielm.cli import app
from minielm.config import S3Config
from minielm.registry import ModelRegistry
from minielm.storage import ObjectStore

runner = CliRunner()
NAME = "student-rewriter"


class FakeIsvcApi:
    """CustomObjectsApi's two calls on one InferenceService; records patches."""

    def __init__(self, canary_percent: int | None = None, reachable: bool = True, patch_ok: bool = True) -> None:
        predictor = {"containers": [{"name": "kserve-container"}]}
        if canary_percent is not None:
            predictor["canaryTrafficPercent"] = canary_percent
        self.isvc = {"kind": "InferenceService", "metadata": {"name": NAME}, "spec": {"predictor": predictor}}
        self.reachable, self.patch_ok = reachable, patch_ok
        self.patches: list[tuple[str, str, dict]] = []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if not self.reachable:
            raise ConnectionRefusedError("connection refused")
        return self.isvc

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        if not self.patch_ok:
            error = RuntimeError("forbidden")
            error.status, error.reason = 403, "Forbidden"
            raise error
        self.patches.append((namespace, name, body))
        return self.isvc


@pytest.fixture()
def registry(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        store = ObjectStore(S3Config(endpoint_url=None))
        store.client.create_bucket(Bucket=store.bucket)
        registry = ModelRegistry(store)
        for label in ("first", "second"):
            folder = tmp_path / label
            folder.mkdir()
            (folder / "weights.txt").write_text(label)
            entry = registry.register(NAME, folder, {"metrics": {"relevant_per_query": 2.5}}, version=f"v-{label}")
            registry.promote(NAME, entry.version, "production", reason=f"promote {label}")
        yield registry


def invoke(*args):
    base = ["--set", "s3.endpoint_url=null", "--set", "paths.state_dir=/nonexistent-state"]
    return runner.invoke(app, [*base, *args])


def test_list_shows_versions_stages_and_history(registry):
    result = invoke("model", "list", NAME)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("v-first") and lines[2].startswith("v-second")
    assert "production" in lines[2] and "relevant_per_query=2.5" in lines[2]
    assert "production: v-second" in result.output and "(promote second)" in result.output
    assert "earlier, newest first: v-first" in result.output
    as_json = json.loads(invoke("model", "list", NAME, "-o", "json").output)
    assert [v["version"] for v in as_json["versions"]] == ["v-first", "v-second"]
    assert as_json["stages"]["production"]["history"] == ["v-first"] and as_json["stages"]["candidate"] is None


def test_list_of_an_unknown_model_exits_2(registry):
    result = invoke("model", "list", "no-such-model")
    assert result.exit_code == 2 and "no registered versions" in result.output


def test_rollback_patches_the_canary_back_to_zero_with_the_callers_credentials(registry, monkeypatch):
    api = FakeIsvcApi(canary_percent=10)
    monkeypatch.setattr(rollout, "caller_api", lambda: api)
    result = invoke("--set", "rl.namespace=shop", "model", "rollback", NAME, "--isvc")
    assert result.exit_code == 0, result.output
    assert registry.stage_version(NAME, "production") == "v-first"
    ((namespace, name, patch),) = api.patches
    assert (namespace, name) == ("shop", NAME)
    assert patch["spec"] == {"predictor": {"canaryTrafficPercent": 0}}
    assert patch["metadata"]["annotations"][rollout.VERSION_ANNOTATION] == "v-first"


def test_rollback_without_a_canary_only_names_the_version(registry, monkeypatch):
    api = FakeIsvcApi()
    monkeypatch.setattr(rollout, "caller_api", lambda: api)
    assert invoke("--set", "rl.kserve_rollout=true", "model", "rollback", NAME).exit_code == 0
    ((_, _, patch),) = api.patches
    assert "spec" not in patch


def test_an_unreachable_inference_service_changes_nothing(registry, monkeypatch):
    monkeypatch.setattr(rollout, "caller_api", lambda: FakeIsvcApi(reachable=False))
    result = invoke("model", "rollback", NAME, "--isvc")
    assert result.exit_code == 1
    assert "unreachable" in result.output and "nothing was changed" in result.output
    assert registry.stage_version(NAME, "production") == "v-second"


def test_a_failed_patch_says_how_to_finish(registry, monkeypatch):
    monkeypatch.setattr(rollout, "caller_api", lambda: FakeIsvcApi(canary_percent=10, patch_ok=False))
    result = invoke("model", "rollback", NAME, "--isvc")
    assert result.exit_code == 1
    assert "HTTP 403 Forbidden" in result.output and "kubectl -n minielm patch inferenceservice" in result.output
    assert registry.stage_version(NAME, "production") == "v-first"


def test_rollback_with_no_previous_version_exits_2(registry):
    assert invoke("model", "rollback", NAME, "--no-isvc").exit_code == 0
    again = invoke("model", "rollback", NAME, "--no-isvc")
    assert again.exit_code == 2 and "no previous version" in again.output


def test_an_unreachable_registry_is_one_line_and_exit_1(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    unreachable = ["--set", "s3.endpoint_url=http://127.0.0.1:9", "--set", "s3.max_attempts=1"]
    for command in (["model", "rollback", NAME, "--no-isvc"], ["model", "list", NAME]):
        result = runner.invoke(app, [*unreachable, "--set", "paths.state_dir=/nonexistent-state", *command])
        assert result.exit_code == 1, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: S3 request to http://127.0.0.1:9 failed: EndpointConnectionError"), line


def test_no_cluster_credentials_is_an_environment_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(rollout.ClusterError, match="no cluster credentials"):
        rollout.caller_api()
