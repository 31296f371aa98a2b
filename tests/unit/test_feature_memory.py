"""Query features held in memory (``feast.online_memory_*``): bounded, expiring, re-read in the background before
they expire, never holding defaults served for a slow or failed read; and the server's cache-hit lane answering
feature requests from them exactly as the normal path does."""

from __future__ import annotations

import json
import threading
import time

import pytest

import serving  # noqa: F401  (imports kserve with a clean argv)
from minielm.config import load_settings
from minielm.features.keys import query_key
from minielm.features.online import OnlineFeatures, RowMemory
from minielm.features.rewrite_cache import RewriteCache
from serving.loading import LoadedModel
from tests.serving_standins import SPELLING, SpellingRewriter

MODEL = "feature-memory-rewriter"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rows_expire_after_their_time_are_due_past_half_of_it_and_stay_bounded():
    clock = Clock()
    memory = RowMemory(size=2, ttl_s=10.0, clock=clock)
    memory.put_all(["a", "b"], [{"v": 1}, {"v": 2}], read_at=clock())
    assert memory.get_all(["a", "b"]) == ([{"v": 1}, {"v": 2}], [])
    clock.now += 6
    assert memory.get_all(["b"]) == ([{"v": 2}], ["b"])
    assert memory.get_all(["a", "missing"]) == (None, [])
    clock.now += 4
    assert memory.get_all(["a"]) == (None, [])  # expired
    memory.put_all(["c"], [{"v": 3}], read_at=clock())
    memory.put_all(["d"], [{"v": 4}], read_at=clock())
    assert memory.get_all(["c", "d"])[0] == [{"v": 3}, {"v": 4}] and len(memory._rows) == 2
    for off in (RowMemory(size=0, ttl_s=10.0), RowMemory(size=5, ttl_s=0.0)):
        off.put_all(["a"], [{"v": 1}], read_at=0.0)
        assert off.get_all(["a"]) == (None, [])


class CountingReads:
    """Stands in for the Feast read: query_stats values by query key, counting reads; optionally slow."""

    def __init__(self, volumes: dict[str, int], delay_s: float = 0.0) -> None:
        self.volumes, self.delay_s, self.reads = volumes, delay_s, 0
        self.done = threading.Event()

    def __call__(self, view, names, join_key, keys):
        self.reads += 1
        time.sleep(self.delay_s)
        values = {name: [self.volumes.get(key) if name == "volume" else None for key in keys] for name in names}
        self.done.set()
        return values


def _settings(tmp_path, *extra):
    return load_settings(
        overrides=[f"feast.repo_path={tmp_path / 'repo'}", "feast.online_timeout_ms=2000", *extra],
        environ={},
        use_services_state=False,
    )


def _online(tmp_path, reads: CountingReads, clock: Clock, *extra) -> OnlineFeatures:
    online = OnlineFeatures(_settings(tmp_path, "feast.online_memory_ttl_s=10", *extra))
    online._read = reads
    online.query_memory.clock = clock
    return online


def test_a_held_row_costs_no_read_and_is_refreshed_in_the_background_before_it_expires(tmp_path):
    clock, reads = Clock(), CountingReads({query_key("red shoes"): 7})
    online = _online(tmp_path, reads, clock)
    first = online.query_features(["red shoes", "never seen"])
    assert [row["volume"] for row in first] == [7, 0] and reads.reads == 1
    assert online.query_features(["red shoes", "never seen"]) == first and reads.reads == 1  # Feast said "no row" too
    assert online.held_query_features(["red shoes"]) == first[:1]

    reads.volumes[query_key("red shoes")] = 9
    reads.done.clear()
    clock.now += 6  # past half its time: still served, re-read in the background
    assert online.query_features(["red shoes"])[0]["volume"] == 7
    assert reads.done.wait(5)
    deadline = time.monotonic() + 5
    while online.held_query_features(["red shoes"])[0]["volume"] != 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert online.held_query_features(["red shoes"])[0]["volume"] == 9 and reads.reads == 2
    clock.now += 10.5  # the refreshed row (read at +6) has expired too: the store is read again
    assert online.held_query_features(["red shoes"]) is None
    assert online.query_features(["red shoes"])[0]["volume"] == 9 and reads.reads == 3
    online.close()


def test_defaults_served_for_a_slow_read_are_not_held(tmp_path):
    clock, reads = Clock(), CountingReads({query_key("red shoes"): 7}, delay_s=0.3)
    online = _online(tmp_path, reads, clock, "feast.online_timeout_ms=20")
    assert online.query_features(["red shoes"])[0]["source"] == "default"
    assert online.held_query_features(["red shoes"]) is None
    reads.delay_s = 0.0
    assert online.query_features(["red shoes"])[0]["volume"] == 7 and reads.reads == 2
    online.close()


def test_memory_off_reads_the_store_every_time(tmp_path):
    clock, reads = Clock(), CountingReads({query_key("red shoes"): 7})
    online = _online(tmp_path, reads, clock, "feast.online_memory_entries=0")
    online.query_features(["red shoes"])
    online.query_features(["red shoes"])
    assert reads.reads == 2 and online.held_query_features(["red shoes"]) is None
    online.close()


class CacheStore:
    """Stands in for the Feast rewrite_cache view: one cached rewrite of version v1."""

    def __init__(self, rows: dict[str, dict]) -> None:
        self.rows = rows

    def get_online_features(self, features, entity_rows):
        names = [f.split(":", 1)[1] for f in features]
        found = [self.rows.get(r["query_key"], {}) if r["model_version"] == "v1" else {} for r in entity_rows]
        values = {name: [row.get(name) for row in found] for name in names}
        return type("Response", (), {"to_dict": lambda _self: values})()


def test_the_cache_hit_lane_answers_feature_requests_from_held_rows_as_the_normal_path_does(tmp_path):
    import asyncio

    from serving.models import RewriterModel

    clock, reads = Clock(), CountingReads({query_key("blu shoos"): 12})
    settings = _settings(tmp_path, "serving.log_rewrites=false", "feast.online_memory_ttl_s=10")
    cache = RewriteCache(settings)
    cache._store = CacheStore(
        {query_key("blu shoos"): {"query": "blu shoos", "rewrite": "blue shoes", "score": 0.5, "produced_by": "v1"}}
    )
    online = _online(tmp_path, reads, clock)
    model = SpellingRewriter(SPELLING, version="v1")
    served = RewriterModel(
        MODEL,
        settings=settings,
        loader=lambda: LoadedModel(MODEL, "v1", "test", model),
        features=online,
        rewrite_cache=cache,
    )
    served.loaded = LoadedModel(MODEL, "v1", "test", model)
    served.ready = True
    body = {"instances": ["blu shoos"], "parameters": {"features": True}}
    assert served.v1_answer_from_memory(json.dumps(body).encode(), "r1") is None  # nothing held yet
    normal = asyncio.run(served.predict(body, {"x-request-id": "r1"}))  # reads both stores and keeps the rows
    assert reads.reads == 1
    payload, headers = served.v1_answer_from_memory(json.dumps(body).encode(), "r1")
    assert json.loads(payload) == normal and headers == {"x-request-id": "r1", "x-model-version": "v1"}
    assert normal["predictions"][0]["features"]["volume"] == 12 and normal["predictions"][0]["cached"] is True
    assert reads.reads == 1
    clock.now += 11  # the features expired: the normal path answers (and reads Feast)
    assert served.v1_answer_from_memory(json.dumps(body).encode(), "r2") is None
    online.close()
    cache.close()


@pytest.mark.parametrize("ttl", ["-1", "abc"])
def test_a_bad_memory_setting_names_the_field(tmp_path, ttl):
    from minielm.config import ConfigError

    with pytest.raises(ConfigError, match="online_memory_ttl_s"):
        _settings(tmp_path, f"feast.online_memory_ttl_s={ttl}")
