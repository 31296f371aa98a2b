"""Serving follows the registry: promotion and rollback reach the responses with no failed request.

Real S3 registry (embedded SeaweedFS), real KServe server over HTTP, a client sending requests
without pause the whole time. Two versions of a table rewriter answer differently, so every
response shows which version produced it, and that it matches the version the response names.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from minielm.registry import ModelRegistry
from minielm.storage import ObjectStore
from serving.app import build_stack, serve_stack
from tests.serving_standins import SPELLING, SpellingRewriter

pytestmark = pytest.mark.integration

QUERY = "wireles hedphones"
ANSWERS = {"v1": "wireless headphones", "v2": "wireless earphones"}
POLL_S = 0.25


class Traffic:
    """A client thread posting one query after another; records (time, status, version, rewrite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[float, int, str | None, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json={"instances": [{"query": QUERY}]})
                except httpx.HTTPError as error:
                    self.results.append((time.monotonic(), 0, None, repr(error)))
                    continue
                if response.status_code != 200:
                    self.results.append((time.monotonic(), response.status_code, None, response.text))
                    continue
                body = response.json()
                self.results.append(
                    (
                        time.monotonic(),
                        200,
                        body["model_version"],
                        body["predictions"][0]["rewrites"][0]["text"],
                    )
                )

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def first_at_or_after(self, since: float, version: str) -> float | None:
        return next((t for t, _, v, _ in self.results if t >= since and v == version), None)


def _wait_for(traffic: Traffic, since: float, version: str, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = traffic.first_at_or_after(since, version)
        if seen is not None:
            return seen - since
        time.sleep(0.05)
    raise AssertionError(f"version {version} not served within {timeout_s} s")


@pytest.fixture()
def followed_server(embedded_services, tmp_path):
    store = ObjectStore(embedded_services.s3)
    registry = ModelRegistry(store)
    name = f"follow-rewriter-{uuid.uuid4().hex[:6]}"
    versions = {}
    for label, table in (("v1", SPELLING), ("v2", {**SPELLING, "hedphones": "earphones"})):
        entry = registry.register(
            name,
            SpellingRewriter(table, version=label).save(tmp_path / label),
            {"model_class": "tests.serving_standins:SpellingRewriter"},
            version=f"{label}-{uuid.uuid4().hex[:4]}",
        )
        versions[label] = entry.version
    registry.promote(name, versions["v1"], "production")
    settings = embedded_services.model_copy(deep=True)
    settings.paths.models_dir = tmp_path / "models"
    settings.models.student_rewriter = name
    settings.serving.enable_feast = False
    settings.serving.log_rewrites = False
    settings.serving.registry_poll_s = POLL_S
    stack = build_stack(settings, with_relevance=False, with_pipeline=False)
    running = serve_stack(stack, settings, port=0)
    yield running, registry, name, versions, stack
    running.stop()


def _switch_seconds(url: str, name: str) -> float:
    """The server's own figure for its last switch (load and warm-up), from /metrics."""
    prefix = f'minielm_model_switch_seconds{{model="{name}"}} '
    return float(
        next(line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith(prefix))[len(prefix) :]
    )


def test_promotion_and_rollback_reach_responses_with_no_failed_request(followed_server):
    running, registry, name, versions, stack = followed_server
    label_of = {version: label for label, version in versions.items()}
    (entry,) = stack.follower.followed
    with Traffic(f"{running.url}/v1/models/{name}:predict") as traffic:
        _wait_for(traffic, 0.0, versions["v1"])
        registry.promote(name, versions["v2"], "production", reason="test promotion")
        promoted_at = time.monotonic()  # the pointer write has completed: the instant the guarantee counts from
        promotion_s = _wait_for(traffic, promoted_at, versions["v2"])
        promotion_switch_s = _switch_seconds(running.url, name)
        assert entry.standby.version == versions["v1"]  # kept in memory for a rollback
        registry.rollback(name, "production")
        rolled_back_at = time.monotonic()
        rollback_s = _wait_for(traffic, rolled_back_at, versions["v1"])
        rollback_switch_s = _switch_seconds(running.url, name)
        assert entry.standby.version == versions["v2"]
        time.sleep(0.5)
    failures = [r for r in traffic.results if r[1] != 200]
    assert failures == [], failures[:3]
    assert len(traffic.results) > 20
    # every answer is the one of the version it names: a switch never mixes two versions
    assert all(rewrite == ANSWERS[label_of[version]] for _, _, version, rewrite in traffic.results)
    # after the rollback was seen, nothing answered with the rolled-back version
    rollback_seen = rolled_back_at + rollback_s
    assert {v for t, _, v, _ in traffic.results if t > rollback_seen} == {versions["v1"]}
    print(
        f"promotion visible after {promotion_s:.3f} s (switch {promotion_switch_s:.3f} s), rollback after "
        f"{rollback_s:.3f} s (switch from standby {rollback_switch_s:.3f} s), poll {POLL_S} s; "
        f"{len(traffic.results)} requests, {len(failures)} failed"
    )


def test_a_version_that_fails_to_load_never_replaces_the_serving_one(followed_server, tmp_path):
    running, registry, name, versions, stack = followed_server
    broken = registry.register(
        name,
        SpellingRewriter(SPELLING).save(tmp_path / "broken"),
        {"model_class": "tests.serving_standins:NoSuchRewriter"},
        version="v3-broken",
    )
    registry.promote(name, broken.version, "production")
    assert stack.follower.poll_once() == []
    assert stack.follower.poll_once() == []  # not retried until the pointer moves
    response = httpx.post(f"{running.url}/v1/models/{name}:predict", json={"instances": [{"query": QUERY}]})
    assert response.status_code == 200
    assert response.json()["model_version"] == versions["v1"]
    assert response.headers["x-model-version"] == versions["v1"]
    metrics = httpx.get(f"{running.url}/metrics").text
    assert f'minielm_model_switches_total{{model="{name}",outcome="failed"}} 1.0' in metrics


def test_rewrite_search_loads_its_index_from_s3(embedded_services, tmp_path):
    import pandas as pd

    from minielm.search import SearchIndex
    from serving.app import PIPELINE_NAME

    products = pd.DataFrame(
        {
            "product_id": ["B01", "B02"],
            "product_locale": ["us", "us"],
            "product_title": ["Acme wireless headphones", "Red wool hat"],
            "product_description": ["", ""],
            "product_bullet_point": ["", ""],
            "product_brand": ["Acme", None],
            "product_color": ["black", "red"],
        }
    )
    store = ObjectStore(embedded_services.s3)
    prefix = f"search/index-{uuid.uuid4().hex[:6]}"
    store.upload_dir(SearchIndex.build(products).save(tmp_path / "index"), prefix)
    registry = ModelRegistry(store)
    name = f"search-rewriter-{uuid.uuid4().hex[:6]}"
    entry = registry.register(
        name,
        SpellingRewriter(SPELLING).save(tmp_path / "rw"),
        {"model_class": "tests.serving_standins:SpellingRewriter"},
    )
    registry.promote(name, entry.version, "production")
    settings = embedded_services.model_copy(deep=True)
    settings.paths.models_dir = tmp_path / "models"
    settings.paths.data_dir = tmp_path / "data"
    settings.models.student_rewriter = name
    settings.serving.enable_feast = False
    settings.serving.log_rewrites = False
    settings.serving.index_prefix = prefix
    running = serve_stack(build_stack(settings, with_relevance=False, with_pipeline=True), settings, port=0)
    try:
        response = httpx.post(f"{running.url}/v1/models/{PIPELINE_NAME}:predict", json={"instances": [QUERY]})
    finally:
        running.stop()
    assert response.status_code == 200, response.text
    result = response.json()["predictions"][0]
    assert result["rewrite"] == "wireless headphones" and result["products"][0]["product_id"] == "B01"


def test_a_missing_index_prefix_is_named(embedded_services, tmp_path):
    from serving.app import index_source
    from serving.loading import ModelLoadError

    settings = embedded_services.model_copy(deep=True)
    settings.paths.data_dir = tmp_path
    settings.serving.index_prefix = f"search/absent-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ModelLoadError, match="serving.index_prefix: .* holds no search index"):
        index_source(settings)
