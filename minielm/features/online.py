"""Online feature lookups with a strict latency budget.

A request never waits on Feast for longer than ``settings.feast.online_timeout_ms``: the lookup runs
on a small worker pool and, past the budget, or when Feast fails (no repo applied, store down) or a
value is missing, the request gets the documented defaults. Every fallback is counted in
``minielm_feast_fallback_total{reason}`` (``missing``, ``timeout``, ``error``) and logged, so a degraded
feature path is visible instead of silent.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
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


class OnlineFeatures:
    """Batched Feast reads for query and product entities, with defaults past the budget."""

    def __init__(self, settings: Settings, workers: int = 2) -> None:
        self.settings = settings
        self.budget_s = settings.feast.online_timeout_ms / 1000.0
        self._store = None
        self._store_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feast-online")
        self._last_warning: dict[str, float] = {}

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

    def _submit(self, view: str, defaults: dict[str, Any], join_key: str, keys: Sequence[str]) -> PendingLookup:
        future = self._pool.submit(self._read, view, list(defaults), join_key, keys) if keys else None
        return PendingLookup(self, view, defaults, len(keys), future, time.monotonic() + self.budget_s)

    def _lookup(self, view: str, defaults: dict[str, Any], join_key: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        return self._submit(view, defaults, join_key, keys).result()

    def submit_query_features(self, queries: Sequence[str]) -> PendingLookup:
        """Start the query_stats lookup now and collect it later (``.result()``), so that the read
        overlaps with the model's work; the budget counts from this call."""
        return self._submit(QUERY_STATS_VIEW, QUERY_DEFAULTS, "query_key", [query_key(q) for q in queries])

    def query_features(self, queries: Sequence[str]) -> list[dict[str, Any]]:
        """``rewriter_v1`` features (query_stats) for each query, keyed by its normalised hash."""
        return self._lookup(QUERY_STATS_VIEW, QUERY_DEFAULTS, "query_key", [query_key(q) for q in queries])

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


class PendingLookup:
    """A lookup in flight: ``result()`` waits at most until its deadline, then serves defaults."""

    def __init__(
        self, owner: OnlineFeatures, view: str, defaults: dict[str, Any], n: int, future, deadline: float
    ) -> None:
        self.owner, self.view, self.defaults, self.n = owner, view, defaults, n
        self.future, self.deadline = future, deadline

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
        rows = []
        missing_rows = 0
        for i in range(self.n):
            row: dict[str, Any] = {}
            found = 0
            for name, default in self.defaults.items():
                value = values.get(name, [None] * self.n)[i]
                if _missing(value):
                    row[name] = default
                else:
                    row[name] = value
                    found += 1
            row["source"] = "feast" if found == len(self.defaults) else ("partial" if found else "default")
            missing_rows += found < len(self.defaults)
            rows.append(row)
        if missing_rows:
            FEAST_FALLBACK.labels("missing").inc(missing_rows)
        return rows
