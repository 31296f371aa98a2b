"""The head-query rewrite cache end to end: feedback windows on S3 (embedded SeaweedFS), the registry, the
warm-up CLI, a real applied Feast repo (sqlite online store) and the KServe server over HTTP.

Two registered versions rewrite "blu shoos" differently, so every answer shows which version made it. The
server's model is wrapped to count what it is asked, so a cache hit is seen to skip it.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from minielm.cli import app
from minielm.features.repo import apply_repo
from minielm.features.rewrite_cache import CachedRewrite, cache_frame, write_cache
from minielm.feedback.windows import WINDOW_COLUMNS, encode_frame, object_key
from minielm.registry import ModelRegistry
from minielm.storage import ObjectStore
from serving.app import build_stack, serve_stack
from tests.integration.feedback_support import write_config
from tests.serving_standins import SPELLING, SpellingRewriter

pytestmark = pytest.mark.integration

HEAD = {"blu shoos": 5, "wireles hedphones": 3, "red hat": 1}  # requests per query in the windows
ANSWERS = {"v1": "blue shoes", "v2": "blue sneakers"}


def _windows(now: float) -> pd.DataFrame:
    queries = [q for q, n in HEAD.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(len(queries))],
            "query": queries,
            "rewrite": queries,
            "model_name": "any",
            "model_version": "old",
            "ts": now,
            "n_results": 10,
            "impressions": 10,
            "clicks": 1,
            "add_to_carts": 0,
            "purchases": 0,
            "reformulated": False,
            "reward": 1.0,
            "feedback_events": 1,
        }
    )


class Counting:
    """Wraps a served model's ``rewrite`` to record the queries it is asked."""

    def __init__(self, model) -> None:
        self.asked: list[str] = []
        original = model.rewrite

        def rewrite(queries, num_return=1, do_sample=False):
            self.asked.extend(queries)
            return original(queries, num_return=num_return, do_sample=do_sample)

        model.rewrite = rewrite


@pytest.fixture()
def cached_server(embedded_services, tmp_path):
    store = ObjectStore(embedded_services.s3)
    registry = ModelRegistry(store)
    suffix = uuid.uuid4().hex[:6]
    name = f"cache-rewriter-{suffix}"
    versions = {}
    for label, table in (("v1", SPELLING), ("v2", {**SPELLING, "shoos": "sneakers"})):
        entry = registry.register(
            name,
            SpellingRewriter(table, version=label).save(tmp_path / label),
            {"model_class": "tests.serving_standins:SpellingRewriter"},
            version=f"{label}-{suffix}",
        )
        versions[label] = entry.version
    registry.promote(name, versions["v1"], "production")
    settings = embedded_services.model_copy(deep=True)
    settings.paths.models_dir = tmp_path / "models"
    settings.models.student_rewriter = name
    settings.feast.repo_path = tmp_path / "feature_repo"
    settings.feast.online_timeout_ms = 1000.0  # correctness here, not latency (the benchmark measures that)
    settings.feedback.windows_prefix = f"cache-test-{suffix}/windows"
    settings.serving.log_rewrites = False
    settings.serving.registry_poll_s = 0  # the test switches versions itself (poll_once)
    settings.rewrite_cache.min_requests = 2
    apply_repo(settings)
    key = object_key(settings.feedback.windows_prefix, settings.kafka.topics.rewrites, 0, 0, sum(HEAD.values()) - 1)
    store.put_bytes(key, encode_frame(_windows(time.time()), WINDOW_COLUMNS))
    stack = build_stack(settings, with_relevance=False, with_pipeline=False)
    running = serve_stack(stack, settings, port=0)
    yield running, settings, registry, name, versions, stack, tmp_path
    running.stop()


def _ask(url: str, name: str, query: str) -> dict:
    response = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [{"query": query}]}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["server-timing"].startswith("app;dur=")
    body = response.json()
    return {
        "version": body["model_version"],
        "text": body["predictions"][0]["rewrites"][0]["text"],
        "cached": body["predictions"][0]["cached"],
    }


def _lookups(url: str, name: str) -> dict[str, float]:
    prefix = f'minielm_rewrite_cache_lookups_total{{model="{name}",outcome="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.split()[-1])
        for line in httpx.get(f"{url}/metrics").text.splitlines()
        if line.startswith(prefix)
    }


def _warm(settings, tmp_path, *args: str) -> dict:
    config = write_config(settings, tmp_path / "settings.yaml")
    result = CliRunner().invoke(app, ["--config", str(config), "features", "warm-cache", "-o", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])


def test_cached_head_queries_skip_the_model_and_never_cross_versions(cached_server):
    running, settings, registry, name, versions, stack, tmp_path = cached_server
    served = stack.models[0]
    v1_model = Counting(served.loaded.model)
    assert _ask(running.url, name, "blu shoos") == {"version": versions["v1"], "text": "blue shoes", "cached": False}

    report = _warm(settings, tmp_path)
    assert report["version"] == versions["v1"] and report["cached_queries"] == 2  # "red hat" is under min_requests
    assert report["head_share_of_requests"] == pytest.approx(8 / 9, abs=1e-4)
    v1_model.asked.clear()
    for _ in range(3):
        assert _ask(running.url, name, "blu shoos") == {"version": versions["v1"], "text": "blue shoes", "cached": True}
    assert _ask(running.url, name, "wireles hedphones")["cached"] is True
    assert _ask(running.url, name, "red hat") == {"version": versions["v1"], "text": "red hat", "cached": False}
    assert v1_model.asked == ["red hat"]  # the head never reached the model

    # A promotion: right after the switch, v1's entries (in Feast and in the server's memory) are not served.
    registry.promote(name, versions["v2"], "production", reason="test promotion")
    assert stack.follower.poll_once() == [name]
    v2_model = Counting(served.loaded.model)
    before = _lookups(running.url, name)
    assert _ask(running.url, name, "blu shoos") == {"version": versions["v2"], "text": "blue sneakers", "cached": False}
    # An entry under v2's key that v1 produced (a mis-keyed write) is ignored and counted as stale.
    write_cache(
        settings,
        cache_frame(["wireles hedphones"], [CachedRewrite("stale answer", None)], versions["v1"], 1.0).assign(
            model_version=versions["v2"]
        ),
    )
    assert _ask(running.url, name, "wireles hedphones") == {
        "version": versions["v2"],
        "text": "wireless headphones",
        "cached": False,
    }
    after = _lookups(running.url, name)
    assert after.get("stale", 0) - before.get("stale", 0) == 1
    assert after.get("miss", 0) - before.get("miss", 0) == 1
    assert v2_model.asked == ["blu shoos", "wireles hedphones"]

    # Warming the new version makes its own rewrites hits.
    report = _warm(settings, tmp_path)
    assert report["version"] == versions["v2"]
    v2_model.asked.clear()
    assert _ask(running.url, name, "blu shoos") == {"version": versions["v2"], "text": "blue sneakers", "cached": True}
    assert v2_model.asked == []


def test_warm_cache_cli_names_a_bad_stage_or_version(cached_server):
    _running, settings, _registry, name, _versions, _stack, tmp_path = cached_server
    config = write_config(settings, tmp_path / "settings.yaml")
    bad_stage = CliRunner().invoke(app, ["--config", str(config), "features", "warm-cache", "--stage", "staging"])
    assert bad_stage.exit_code == 2 and "--stage" in bad_stage.output
    bad_version = CliRunner().invoke(app, ["--config", str(config), "features", "warm-cache", "--version", "v9"])
    assert bad_version.exit_code == 2 and "--version" in bad_version.output and name in bad_version.output
