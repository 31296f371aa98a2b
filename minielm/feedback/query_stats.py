"""Per-query traffic statistics from the feedback stream, and the sink that makes them Feast features.

The columns and their types are the offline table layout of the ``query_stats`` feature view
(:data:`minielm.features.repo.QUERY_STATS_COLUMNS`, checked against ``feature_repo/definitions.py`` by
a test), so the frame pushed here is the frame the feature view declares.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from minielm.config import Settings
from minielm.features.keys import query_key
from minielm.features.repo import QUERY_STATS_COLUMNS, QUERY_STATS_PUSH, feature_store
from minielm.feedback.events import FeedbackEvent, ServedRewrite
from minielm.logs import get_logger

log = get_logger(__name__)

# The feature values' types; the entity key (query_key) stays a plain string column.
FEATURE_DTYPES = {column: dtype for column, dtype in QUERY_STATS_COLUMNS.items() if column != "query_key"}


class QueryStatsSink(Protocol):
    def push(self, frame: pd.DataFrame) -> None:
        """Make the per-query statistics in ``frame`` visible to online feature reads."""


class FeastQueryStatsSink:
    """Pushes to the ``query_stats_push`` source of the applied Feast repo (online store)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = None

    def push(self, frame: pd.DataFrame) -> None:
        from feast.data_source import PushMode  # feast is slow to import; only a pushing aggregator needs it

        if self._store is None:
            self._store = feature_store(self.settings)
        self._store.push(QUERY_STATS_PUSH, frame, to=PushMode.ONLINE)


@dataclass
class QueryCounts:
    volume: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    reformulations: int = 0
    zero_results: int = 0
    last_seen_ts: float = 0.0


class QueryStats:
    """Running per-query counts since this aggregator started, turned into the ``query_stats`` features."""

    def __init__(self, key_cache_size: int = 100_000) -> None:
        self.counts: dict[str, QueryCounts] = defaultdict(QueryCounts)
        self.touched: set[str] = set()
        self._keys: dict[str, str] = {}
        self._key_cache_size = key_cache_size

    def key(self, query: str) -> str:
        """query_key with a cache: hot queries repeat, and hashing is a visible part of the per-event cost."""
        key = self._keys.get(query)
        if key is None:
            if len(self._keys) >= self._key_cache_size:
                self._keys.clear()
            key = self._keys[query] = query_key(query)
        return key

    def served(self, event: ServedRewrite) -> None:
        key = self.key(event.query)
        counts = self.counts[key]
        counts.volume += 1
        counts.zero_results += not event.product_ids
        counts.last_seen_ts = max(counts.last_seen_ts, event.ts)
        self.touched.add(key)

    def feedback(self, event: FeedbackEvent) -> None:
        key = self.key(event.query)
        counts = self.counts[key]
        kind = event.event_type
        if kind == "impression":
            counts.impressions += 1
        elif kind == "click":
            counts.clicks += 1
        elif kind == "add_to_cart":
            counts.add_to_carts += 1
        elif kind == "reformulation":
            counts.reformulations += 1
        counts.last_seen_ts = max(counts.last_seen_ts, event.ts)
        self.touched.add(key)

    def take_frame(self) -> pd.DataFrame:
        keys = sorted(self.touched)
        self.touched = set()
        rows = []
        for key in keys:
            c = self.counts[key]
            volume = max(c.volume, 1)
            rows.append(
                {
                    "query_key": key,
                    "volume": c.volume,
                    "ctr": c.clicks / c.impressions if c.impressions else c.clicks / volume,
                    "add_to_cart_rate": c.add_to_carts / volume,
                    "reformulation_rate": c.reformulations / volume,
                    "zero_result_rate": c.zero_results / volume,
                    "last_seen_ts": c.last_seen_ts,
                }
            )
        frame = pd.DataFrame.from_records(rows, columns=list(QUERY_STATS_COLUMNS)).astype(FEATURE_DTYPES)
        frame["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("us")
        return frame


class QueryStatsPublisher:
    """Pushes the statistics of the queries seen since the last push every ``interval_s``. A failed push
    keeps them for the next one after ``backoff_s``: features lag behind, the windows are unaffected."""

    def __init__(
        self,
        sink: QueryStatsSink | None,
        interval_s: float,
        backoff_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.query_stats = QueryStats()
        self.interval_s, self.backoff_s = interval_s, backoff_s
        self.pushes = self.failures = 0
        self._last_push = clock()
        self._backoff_until = 0.0

    def push_due(self, now: float, force: bool = False) -> None:
        """Push if the interval has passed (or ``force``) and any query changed."""
        if self.sink is None or not self.query_stats.touched:
            return
        if not force and (now - self._last_push < self.interval_s or now < self._backoff_until):
            return
        self._last_push = now
        frame = self.query_stats.take_frame()
        try:
            self.sink.push(frame)
            self.pushes += 1
        except Exception as error:  # features lag behind but the windows (the record) are unaffected
            self.failures += 1
            self.query_stats.touched.update(frame["query_key"])
            self._backoff_until = now + self.backoff_s
            log.warning("query stats push to Feast failed; will retry", error=f"{type(error).__name__}: {error}"[:300])
