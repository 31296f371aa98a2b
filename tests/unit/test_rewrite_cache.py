"""The head-query rewrite cache: head selection, entry layout, version-safe lookups, the server's use of it,
and one warm-up written to and read back from a real (sqlite) Feast online store."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

import serving  # noqa: F401  (imports kserve with a clean argv)
from minielm.config import load_settings
from minielm.features.keys import query_key
from minielm.features.repo import REWRITE_CACHE_COLUMNS, apply_repo
from minielm.features.rewrite_cache import (
    CACHE_LOOKUPS,
    CachedRewrite,
    RewriteCache,
    RewriteCacheError,
    cache_frame,
    head_queries,
    warm_rewrite_cache,
)
from serving.loading import LoadedModel
from serving.validation import Parsed
from tests.serving_standins import SPELLING, SpellingRewriter

MODEL = "cache-test-rewriter"


def _settings(tmp_path, *extra):
    return load_settings(
        overrides=[f"feast.repo_path={tmp_path / 'repo'}", "feast.online_timeout_ms=2000", *extra],
        environ={},
        use_services_state=False,
    )


def _count(outcome: str, model: str = MODEL) -> float:
    return CACHE_LOOKUPS.labels(model, outcome)._value.get()


class CountingRewriter(SpellingRewriter):
    """The spelling table, counting the queries it was asked to rewrite."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def rewrite(self, queries, num_return=1, do_sample=False):
        self.asked.extend(queries)
        return super().rewrite(queries, num_return, do_sample)


def test_head_queries_rank_by_requests_with_one_surface_form_per_key():
    windows = pd.DataFrame(
        {
            "query": [
                "blu shoos",
                "blu  shoos",
                "Blu Shoos",
                "wireles hedphones",
                "wireles hedphones",
                "hat",
                " ",
                None,
            ]
            + ["red  dress"] * 3
        }
    )
    head = head_queries(windows, top=10, min_requests=2)
    # whitespace is cleaned as the prompt cleans it; "Blu Shoos" shares the key but is a rarer form
    assert head["query"].tolist() == ["red dress", "blu shoos", "wireles hedphones"]
    assert head["requests"].tolist() == [3, 2, 2]
    assert head["query_key"].tolist() == [query_key(q) for q in head["query"]]
    assert head_queries(windows, top=1, min_requests=1)["query"].tolist() == ["red dress"]
    assert "hat" in head_queries(windows, top=10, min_requests=1)["query"].tolist()
    with pytest.raises(RewriteCacheError, match="'query' column"):
        head_queries(pd.DataFrame({"text": ["a"]}), 10, 1)


def test_cache_frame_has_the_view_layout_and_records_the_producing_version():
    frame = cache_frame(
        ["blu  shoos", "hat"], [CachedRewrite("blue shoes", 0.5), CachedRewrite("hat", None)], "v7", 10.0
    )
    assert list(frame.columns) == [*REWRITE_CACHE_COLUMNS, "event_timestamp"]
    assert frame["query"].tolist() == ["blu shoos", "hat"]
    assert set(frame["model_version"]) == set(frame["produced_by"]) == {"v7"}
    assert frame["score"].iloc[0] == pytest.approx(0.5) and math.isnan(frame["score"].iloc[1])


class FakeStore:
    """Stands in for the Feast online store: rows by (query_key, model_version), as get_online_features reads."""

    def __init__(self, rows: dict[tuple[str, str], dict], fail: BaseException | None = None, delay_s: float = 0.0):
        self.rows, self.fail, self.delay_s, self.reads = rows, fail, delay_s, 0

    def get_online_features(self, features, entity_rows):
        self.reads += 1
        time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        names = [f.split(":", 1)[1] for f in features]
        found = [self.rows.get((r["query_key"], r["model_version"]), {}) for r in entity_rows]
        values = {name: [row.get(name) for row in found] for name in names}
        return type("Response", (), {"to_dict": lambda _self: values})()


def _entry(query: str, rewrite: str, produced_by: str, score: float = math.nan) -> dict:
    return {"query": query, "rewrite": rewrite, "score": score, "produced_by": produced_by}


def _cache(tmp_path, store: FakeStore, *extra) -> RewriteCache:
    cache = RewriteCache(_settings(tmp_path, *extra))
    cache._store = store
    return cache


def test_lookup_serves_only_entries_of_the_requested_version_and_counts_every_outcome(tmp_path):
    key = query_key("blu shoos")
    store = FakeStore(
        {
            (key, "v1"): _entry("blu shoos", "blue shoes v1", "v1", 0.25),
            (key, "v2"): _entry("blu shoos", "blue shoes v1", "v1"),  # mis-keyed: produced by v1 under v2's key
            (query_key("hat"), "v1"): _entry("hat", "hat", "v1"),
        }
    )
    cache = _cache(tmp_path, store)
    before = {o: _count(o) for o in ("hit", "miss", "stale", "error")}
    found = cache.lookup(["blu  shoos", "Blu Shoos", "wireles hedphones", "hat"], "v1", MODEL)
    # "Blu Shoos" shares the key but not the text the entry was made for: the model must answer it
    assert found == [CachedRewrite("blue shoes v1", 0.25), None, None, CachedRewrite("hat", None)]
    assert cache.lookup(["blu shoos"], "v2", MODEL) == [None]  # another version's rewrite is never served
    assert cache.lookup(["blu shoos"], "v3", MODEL) == [None]
    after = {o: _count(o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {"hit": 2, "miss": 3, "stale": 1, "error": 0}


def test_memory_keeps_hits_per_version_and_skips_the_store(tmp_path):
    key = query_key("blu shoos")
    store = FakeStore({(key, "v1"): _entry("blu shoos", "blue shoes", "v1")})
    cache = _cache(tmp_path, store)
    assert cache.lookup(["blu shoos"], "v1", MODEL) == [CachedRewrite("blue shoes", None)]
    reads, hits = store.reads, _count("hit")
    assert cache.lookup(["blu shoos"], "v1", MODEL) == [CachedRewrite("blue shoes", None)]
    assert store.reads == reads and _count("hit") == hits + 1  # answered from memory
    assert cache.lookup(["blu shoos"], "v2", MODEL) == [None]  # memory is per version: the store is asked
    assert store.reads == reads + 1
    small = _cache(tmp_path, FakeStore({}), "rewrite_cache.memory_entries=1")
    small.memory.put(("a", "v1"), CachedRewrite("a", None))
    small.memory.put(("b", "v1"), CachedRewrite("b", None))
    assert small.memory.get(("a", "v1")) is None and small.memory.get(("b", "v1")) is not None


def test_a_failed_or_slow_store_is_a_counted_miss(tmp_path):
    errors = _count("error")
    failing = _cache(tmp_path, FakeStore({}, fail=RuntimeError("redis down")))
    assert failing.lookup(["blu shoos", "hat"], "v1", MODEL) == [None, None]
    store = FakeStore({(query_key("blu shoos"), "v1"): _entry("blu shoos", "blue shoes", "v1")}, delay_s=0.5)
    slow = _cache(tmp_path, store, "feast.online_timeout_ms=20")
    started = time.monotonic()
    assert slow.lookup(["blu shoos"], "v1", MODEL) == [None]
    assert time.monotonic() - started < 0.4  # the budget, not the store, bounds the wait
    assert _count("error") == errors + 3
    deadline = time.monotonic() + 10
    while slow.memory.get(("blu shoos", "v1")) is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the late read finishes in the background and keeps its hit for the next request
    assert slow.lookup(["blu shoos"], "v1", MODEL) == [CachedRewrite("blue shoes", None)]
    assert store.reads == 1
    failing.close()
    slow.close()


def _rewriter_model(tmp_path, cache: RewriteCache | None, model: CountingRewriter, version: str):
    from serving.models import RewriterModel

    settings = _settings(tmp_path, "serving.enable_feast=false", "serving.log_rewrites=false")
    served = RewriterModel(
        MODEL, settings=settings, loader=lambda: LoadedModel(MODEL, version, "test", model), rewrite_cache=cache
    )
    served.loaded = LoadedModel(MODEL, version, "test", model)
    return served


def test_the_server_runs_the_model_only_for_queries_the_cache_misses(tmp_path):
    store = FakeStore({(query_key("blu shoos"), "v1"): _entry("blu shoos", "cached blue shoes", "v1")})
    model = CountingRewriter(SPELLING, version="v1")
    served = _rewriter_model(tmp_path, _cache(tmp_path, store), model, "v1")
    results = served.infer(Parsed([{"query": "blu shoos"}, {"query": "wireles hedphones"}]), "r1", False)
    assert [r["rewrites"][0]["text"] for r in results] == ["cached blue shoes", "wireless headphones"]
    assert [r["cached"] for r in results] == [True, False]
    assert model.asked == ["wireles hedphones"]
    # several rewrites per query are not what the cache holds: the model answers all of them
    results = served.infer(Parsed([{"query": "blu shoos"}], {"num_return": 2}), "r2", False)
    assert [r["text"] for r in results[0]["rewrites"]] == ["blue shoes", "blue shoes (1)"]
    assert results[0]["cached"] is False
    # a request reads its version once: after a switch, entries of the old version are not served
    newer = CountingRewriter({**SPELLING, "shoos": "sneakers"}, version="v2")
    served.loaded = LoadedModel(MODEL, "v2", "test", newer)
    results = served.infer(Parsed([{"query": "blu shoos"}]), "r3", False)
    assert results[0]["rewrites"][0]["text"] == "blue sneakers" and results[0]["cached"] is False
    assert newer.asked == ["blu shoos"]


def test_warm_up_writes_the_served_rewrites_to_feast_and_the_server_reads_them_back(tmp_path):
    settings = _settings(tmp_path, "rewrite_cache.top_queries=2")
    apply_repo(settings)
    windows = pd.DataFrame({"query": ["blu shoos"] * 3 + ["wireles hedphones"] * 2 + ["hat"] * 2 + ["rare"]})
    model = CountingRewriter(SPELLING, version="v1")
    report = warm_rewrite_cache(settings, version="v1", windows=windows, model=model, progress=False)
    assert model.asked == ["blu shoos", "hat"]  # the two most requested ("hat" < "wireles..." on a tie)
    assert report["cached_queries"] == 2 and report["changed_by_rewrite"] == 1
    assert report["head_share_of_requests"] == pytest.approx(5 / 8, abs=1e-4)
    cache = RewriteCache(settings)
    cache.warm_up()
    found = cache.lookup(["blu shoos", "hat", "wireles hedphones"], "v1", MODEL)
    assert found == [CachedRewrite("blue shoes", None), CachedRewrite("hat", None), None]
    assert cache.lookup(["blu shoos"], "v2", MODEL) == [None]
    cache.close()
    with pytest.raises(RewriteCacheError, match="version"):
        warm_rewrite_cache(settings, windows=windows, model=model, progress=False)


def test_requests_whose_queries_are_all_in_memory_are_answered_without_a_worker_thread(tmp_path):
    import asyncio

    store = FakeStore({(query_key("blu shoos"), "v1"): _entry("blu shoos", "cached blue shoes", "v1")})
    model = CountingRewriter(SPELLING, version="v1")
    served = _rewriter_model(tmp_path, _cache(tmp_path, store), model, "v1")
    served.infer(Parsed([{"query": "blu shoos"}]), "r0", False)  # the first hit comes from the store
    calls = []
    served.infer = lambda *args: calls.append(args) or []  # a worker-thread answer would show here
    body = asyncio.run(served.predict({"instances": ["blu shoos"]}))
    assert body["model_version"] == "v1" and calls == [] and store.reads == 1
    assert body["predictions"][0]["rewrites"] == [{"text": "cached blue shoes", "score": None}]
    assert body["predictions"][0]["cached"] is True
    # one query not in memory, or several rewrites asked: the worker thread answers
    asyncio.run(served.predict({"instances": ["blu shoos", "hat"]}))
    asyncio.run(served.predict({"instances": ["blu shoos"], "parameters": {"num_return": 2}}))
    assert len(calls) == 2 and model.asked == []


def test_a_failed_warm_up_after_promotion_is_reported_with_the_command_and_never_raised(monkeypatch):
    from minielm.features import rewrite_cache

    def unreachable(settings, version=None, progress=True):
        raise ConnectionError("feast online store unreachable")

    monkeypatch.setattr(rewrite_cache, "warm_rewrite_cache", unreachable)
    outcome = rewrite_cache.warm_after_promotion(load_settings(None), "v2")

    assert outcome["version"] == "v2" and "feast online store unreachable" in outcome["error"]
    assert outcome["retry"] == "minielm features warm-cache --version v2"


def test_the_server_answers_memory_hits_in_its_cache_hit_lane_exactly_as_the_normal_path(tmp_path):
    """Over real HTTP: the lane's answer is the normal path's (body, request id, version headers, timing), and
    anything it cannot answer (a miss, a malformed or invalid body, several rewrites) gets the normal answer."""
    import httpx

    from serving.server import serve_in_thread

    store = FakeStore({(query_key("blu shoos"), "v1"): _entry("blu shoos", "cached blue shoes", "v1", 0.5)})
    model = CountingRewriter(SPELLING, version="v1")
    served = _rewriter_model(tmp_path, _cache(tmp_path, store), model, "v1")
    served.ready = True
    lane = []
    answer = served.v1_answer_from_memory
    served.v1_answer_from_memory = lambda *args: lane.append(answered := answer(*args)) or answered
    running = serve_in_thread([served])
    try:
        url = f"{running.url}/v1/models/{MODEL}:predict"

        def ask(body, **headers):
            return httpx.post(url, json=body, headers=headers, timeout=30)

        first = ask({"instances": ["blu shoos"]}, **{"x-request-id": "first"})  # from the store: normal path
        assert lane == [None] and store.reads == 1
        second = ask({"instances": [{"query": "blu shoos"}]}, **{"x-request-id": "second"})  # from memory: lane
        assert lane[-1] is not None and store.reads == 1
        assert first.status_code == second.status_code == 200
        assert first.json() == {**second.json(), "request_id": "first", "predictions": first.json()["predictions"]}
        assert first.json()["predictions"] == [{**second.json()["predictions"][0], "request_id": "first"}]
        assert second.json()["predictions"][0]["rewrites"] == [{"text": "cached blue shoes", "score": 0.5}]
        for response, request_id in ((first, "first"), (second, "second")):
            assert response.headers["x-request-id"] == response.json()["request_id"] == request_id
            assert response.headers["x-model-version"] == "v1"
            assert response.headers["content-type"] == "application/json"
            timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
            assert set(timing) == {"app", "read"} and 0 <= float(timing["read"]) <= float(timing["app"])
        generated = ask({"instances": ["blu shoos"]}).json()["request_id"]  # no client id: a fresh one
        assert len(generated) == 32 and generated != second.json()["request_id"]

        lane.clear()
        assert ask({"instances": ["hat"]}).json()["predictions"][0]["cached"] is False  # a miss: the model
        assert (
            ask({"instances": ["blu shoos"], "parameters": {"num_return": 2}}).json()["predictions"][0]["cached"]
            is False
        )
        bad = ask({"instances": ["blu shoos"], "parameters": {"beam": 3}})
        assert bad.status_code == 400 and bad.json()["error"].startswith("parameters.beam: unknown parameter")
        invalid = ask({"instances": ["blu shoos"], "parameters": {"num_return": "two"}})
        assert invalid.status_code == 400 and invalid.json()["error"].startswith("parameters.num_return:")
        garbled = httpx.post(url, content=b'{"instances": ["blu shoos"', timeout=30)
        assert garbled.status_code == 400
        assert lane == [None] * 5 and model.asked == ["hat", "blu shoos"]
    finally:
        running.stop()
