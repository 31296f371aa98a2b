"""Online feature lookups with a strict latency budget.

A request never waits on Feast for longer than ``settings.feast.online_timeout_ms``: the lookup runs
on a small worker pool and, past the budget, or when Feast fails (no repo applied, store down) or a
value is missing, the request gets the documented defaults. Every fallback is counted in
``minielm_feast_fallback_total{reason}`` (``missing``, ``timeout``, ``error``) and logged, so a degraded
feature path is visible instead of silent.

Query rows that Feast answered (values or "no row") stay in process memory for ``feast.online_memory_ttl_s``
(at most ``feast.online_memory_entries`` queries, least recently used go first), keyed by the entity key: a head
query's features then cost no store read, and the server's cache-hit lane can answer with them. A row past half
that time is re-read in the background while it is still served, so a steadily requested query never waits for
the store again. Rows are at most that many seconds older than the store (the default is one aggregator window,
the store's own freshness step); defaults served after a timeout or an error are never kept.
``minielm_feast_fallback_total{reason="missing"}`` counts rows as they are read from the store, not each time
memory serves them again.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from prometheus_client import Counter, Histogram

from minielm.config import Settings
from minielm.features.keys import query_key
from minielm.features.repo import PRODUCT_FEATURES_VIEW, QUERY_STATS_VIEW, shared_feature_store
from minielm.logs import get_logger

log = get_logger(__name__)

FEAST_FALLBACK = Counter(
    "minielm_feast_fallback", "Feature rows served with defaults instead of Feast values", ["reason"]
)

FEAST_WAIT = Histogram(
    "minielm_feast_wait_seconds",
    "Time a request waited for its Feast lookup (what enrichment adds to the request path)",
    ["view"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)

QUERY_DEFAULTS: dict[str, Any] = {
    "volume": 0,
    "ctr": 0.0,
    "add_to_cart_rate": 0.0,
    "reformulation_rate": 0.0,
    "zero_result_rate": 0.0,
    "last_seen_ts": 0.0,
}
PRODUCT_DEFAULTS: dict[str, Any] = {"category": "", "brand": "", "price": 0.0, "popularity": 0.0, "rating": 0.0}
WARN_EVERY_S = 30.0


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def feature_rows(values: dict[str, list], defaults: dict[str, Any], n: int) -> tuple[list[dict[str, Any]], int]:
    """Rows of a Feast read (``to_dict()``), defaults for missing values, each with its ``source``; and how many
    rows lacked a value."""
    rows, missing_rows = [], 0
    for i in range(n):
        row: dict[str, Any] = {}
        found = 0
        for name, default in defaults.items():
            value = values.get(name, [None] * n)[i]
            if _missing(value):
                row[name] = default
            else:
                row[name] = value
                found += 1
        row["source"] = "feast" if found == len(defaults) else ("partial" if found else "default")
        missing_rows += found < len(defaults)
        rows.append(row)
    return rows, missing_rows


class RowMemory:
    """Feature rows by entity key for ``ttl_s`` seconds, at most ``size`` of them (least recently used go first).

    A row past half its time is still served, and named as due for a re-read, so a steadily requested key is
    refreshed in the background before it expires instead of costing a request a store read. Rows are handed out
    as they are held (no copy): callers read them, never change them."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size if ttl_s > 0 else 0
        self.ttl_s = ttl_s
        self.clock = clock
        self._rows: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()  # key -> (read at, row)
        self._lock = threading.Lock()

    def get_all(self, keys: Sequence[str]) -> tuple[list[dict[str, Any]] | None, list[str]]:
        """(every key's row while none has expired, else None; the keys whose rows are due for a re-read)."""
        if not self.size:
            return None, []
        now, rows, due = self.clock(), [], []
        with self._lock:
            for key in keys:
                held = self._rows.get(key)
                if held is None or now - held[0] >= self.ttl_s:
                    return None, []
                self._rows.move_to_end(key)
                rows.append(held[1])
                if now - held[0] >= self.ttl_s / 2:
                    due.append(key)
        return rows, due

    def put_all(self, keys: Sequence[str], rows: Sequence[dict[str, Any]], read_at: float) -> None:
        """Keep rows read from the store at ``read_at`` (the clock's time when the read started)."""
        if not self.size:
            return
        with self._lock:
            for key, row in zip(keys, rows):
                self._rows[key] = (read_at, row)
                self._rows.move_to_end(key)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)


class OnlineFeatures:
    """Batched Feast reads for query and product entities, with defaults past the budget."""

    def __init__(self, settings: Settings, workers: int = 2) -> None:
        self.settings = settings
        self.budget_s = settings.feast.online_timeout_ms / 1000.0
        self._store = None
        self._store_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feast-online")
        self._last_warning: dict[str, float] = {}
        self.query_memory = RowMemory(settings.feast.online_memory_entries, settings.feast.online_memory_ttl_s)
        self._refreshing: set[str] = set()  # query keys whose background re-read is in flight
        self._refreshing_lock = threading.Lock()

    def _get_store(self):
        with self._store_lock:
            if self._store is None:
                self._store = shared_feature_store(self.settings)
            return self._store

    def _read(self, view: str, names: Sequence[str], join_key: str, keys: Sequence[str]) -> dict[str, list]:
        store = self._get_store()
        refs = [f"{view}:{name}" for name in names]
        return store.get_online_features(features=refs, entity_rows=[{join_key: k} for k in keys]).to_dict()

    def _warn(self, reason: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warning[reason] = now
            log.warning("feast lookup fell back to defaults", reason=reason, **fields)

    def _submit(
        self,
        view: str,
        defaults: dict[str, Any],
        join_key: str,
        keys: Sequence[str],
        on_read: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> PendingLookup:
        future = self._pool.submit(self._read, view, list(defaults), join_key, keys) if keys else None
        return PendingLookup(self, view, defaults, len(keys), future, time.monotonic() + self.budget_s, on_read)

    def _lookup(self, view: str, defaults: dict[str, Any], join_key: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        return self._submit(view, defaults, join_key, keys).result()

    def submit_query_features(self, queries: Sequence[str]) -> PendingLookup | HeldRows:
        """Start the query_stats lookup now and collect it later (``.result()``), so that the read
        overlaps with the model's work; the budget counts from this call. Rows held in memory need no read."""
        keys = [query_key(q) for q in queries]
        held = self._held(keys) if keys else None
        if held is not None:
            return HeldRows(held)
        read_at = self.query_memory.clock()
        return self._submit(
            QUERY_STATS_VIEW,
            QUERY_DEFAULTS,
            "query_key",
            keys,
            lambda rows: self.query_memory.put_all(keys, rows, read_at),
        )

    def query_features(self, queries: Sequence[str]) -> list[dict[str, Any]]:
        """``rewriter_v1`` features (query_stats) for each query, keyed by its normalised hash."""
        return self.submit_query_features(queries).result()

    def held_query_features(self, queries: Sequence[str]) -> list[dict[str, Any]] | None:
        """Every query's row when all are held in memory, else None; never reads the store."""
        return self._held([query_key(q) for q in queries])

    def _held(self, keys: list[str]) -> list[dict[str, Any]] | None:
        rows, due = self.query_memory.get_all(keys)
        if due:
            self._refresh(due)
        return rows

    def _refresh(self, keys: list[str]) -> None:
        """Re-read rows past half their time in the background (one read per key at a time); a failed read
        leaves them to expire, and the next request reads the store itself."""
        with self._refreshing_lock:
            keys = [key for key in keys if key not in self._refreshing]
            self._refreshing.update(keys)
        if not keys:
            return
        read_at = self.query_memory.clock()
        future = self._pool.submit(self._read, QUERY_STATS_VIEW, list(QUERY_DEFAULTS), "query_key", keys)
        future.add_done_callback(lambda done: self._refreshed(done, keys, read_at))

    def _refreshed(self, done, keys: list[str], read_at: float) -> None:
        with self._refreshing_lock:
            self._refreshing.difference_update(keys)
        if done.cancelled() or done.exception() is not None:
            return
        rows, missing = feature_rows(done.result(), QUERY_DEFAULTS, len(keys))
        if missing:
            FEAST_FALLBACK.labels("missing").inc(missing)
        self.query_memory.put_all(keys, rows, read_at)

    def product_features(self, product_ids: Sequence[str]) -> list[dict[str, Any]]:
        """product_features for each product id."""
        return self._lookup(PRODUCT_FEATURES_VIEW, PRODUCT_DEFAULTS, "product_id", list(product_ids))

    def warm_up(self) -> None:
        """Open the store and read once outside the budget (registry load, sqlite connection), so the
        first real request is not the one that pays for it. Raises if Feast is unusable."""
        self._read(QUERY_STATS_VIEW, list(QUERY_DEFAULTS), "query_key", [query_key("warm up")])
        self._read(PRODUCT_FEATURES_VIEW, list(PRODUCT_DEFAULTS), "product_id", ["warm-up"])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class HeldRows:
    """A lookup answered from memory: the :class:`PendingLookup` interface without a read."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def result(self) -> list[dict[str, Any]]:
        return self.rows


class PendingLookup:
    """A lookup in flight: ``result()`` waits at most until its deadline, then serves defaults. ``on_read`` gets
    the rows of a read that Feast answered (not defaults served for a timeout or an error)."""

    def __init__(
        self,
        owner: OnlineFeatures,
        view: str,
        defaults: dict[str, Any],
        n: int,
        future,
        deadline: float,
        on_read: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.owner, self.view, self.defaults, self.n = owner, view, defaults, n
        self.future, self.deadline, self.on_read = future, deadline, on_read

    def _defaults(self, reason: str, **fields: Any) -> list[dict[str, Any]]:
        FEAST_FALLBACK.labels(reason).inc(self.n)
        self.owner._warn(reason, view=self.view, **fields)
        return [{**self.defaults, "source": "default"} for _ in range(self.n)]

    def result(self) -> list[dict[str, Any]]:
        if self.future is None:
            return []
        with FEAST_WAIT.labels(self.view).time():
            return self._collect()

    def _collect(self) -> list[dict[str, Any]]:
        try:
            values = self.future.result(timeout=max(self.deadline - time.monotonic(), 0.0))
        except FutureTimeout:
            self.future.cancel()
            return self._defaults("timeout", budget_ms=self.owner.settings.feast.online_timeout_ms)
        except Exception as error:  # Feast down or not applied: serve defaults, count and log it.
            return self._defaults("error", error=f"{type(error).__name__}: {error}")
        rows, missing_rows = feature_rows(values, self.defaults, self.n)
        if missing_rows:
            FEAST_FALLBACK.labels("missing").inc(missing_rows)
        if self.on_read is not None:
            self.on_read(rows)
        return rows
