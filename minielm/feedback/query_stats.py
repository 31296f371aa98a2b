"""Per-query traffic statistics from the feedback stream, and the sink that makes them Feast features.

Exact at any replica count and across restarts: the statistics of partition p are *committed totals*,
derived from the rows each cut makes durable (window rows and late events, each event in exactly one
of them) and written to S3 with that cut, so they always match the committed offsets. What a member
pushes for a query is the sum of every partition's committed totals (its own from memory, the others'
read from S3) plus, for freshness, its own partitions' counts consumed since their last commit. With
several members a value lies between the committed and the true total until the cuts catch up; once
they do, every member pushes the same value, the one a single member would.

The feature columns and their types are the offline table layout of the ``query_stats`` feature view
(:data:`minielm.features.repo.QUERY_STATS_COLUMNS`, checked against ``feature_repo/definitions.py`` by
a test), so the frame pushed here is the frame the feature view declares.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from minielm.config import FeedbackConfig, Settings
from minielm.features.keys import query_key
from minielm.features.repo import QUERY_STATS_COLUMNS, QUERY_STATS_PUSH, feature_store
from minielm.feedback.cut_objects import COUNT_COLUMN
from minielm.feedback.events import FeedbackEvent, ServedRewrite
from minielm.feedback.join import Cut
from minielm.logs import get_logger

log = get_logger(__name__)

# The feature values' types; the entity key (query_key) stays a plain string column.
FEATURE_DTYPES = {column: dtype for column, dtype in QUERY_STATS_COLUMNS.items() if column != "query_key"}
# A partition's committed totals on S3: one row per query key.
TOTALS_COLUMNS = {
    "query_key": "string",
    "volume": "int64",
    "impressions": "int64",
    "clicks": "int64",
    "add_to_carts": "int64",
    "reformulations": "int64",
    "zero_results": "int64",
    "last_seen_ts": "float64",
}
# Rounds of "read the other partitions' totals, push what changed" when a member stops.
FINAL_PUSH_ROUNDS = 5
FINAL_PUSH_RETRY_S = 1.0


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


class TotalsStore(Protocol):
    """Where the committed totals of every partition live (:class:`~minielm.feedback.cut_store.CutStore`)."""

    def latest_totals_keys(self) -> dict[int, str]:
        """The newest totals object of each partition."""

    def read_totals(self, key: str) -> pd.DataFrame | None:
        """A totals object; None if a newer cut has deleted it meanwhile."""


@dataclass
class QueryCounts:
    volume: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    reformulations: int = 0
    zero_results: int = 0
    last_seen_ts: float = 0.0

    def as_tuple(self) -> tuple:
        """The fields in order (``dataclasses.astuple`` deep-copies, and is slow on the hot path)."""
        return (
            self.volume,
            self.impressions,
            self.clicks,
            self.add_to_carts,
            self.reformulations,
            self.zero_results,
            self.last_seen_ts,
        )

    def add(self, other: QueryCounts, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` take away) ``other``'s counts; the last-seen time keeps the maximum."""
        self.volume += sign * other.volume
        self.impressions += sign * other.impressions
        self.clicks += sign * other.clicks
        self.add_to_carts += sign * other.add_to_carts
        self.reformulations += sign * other.reformulations
        self.zero_results += sign * other.zero_results
        self.last_seen_ts = max(self.last_seen_ts, other.last_seen_ts)


Totals = dict[str, QueryCounts]
COUNT_FIELDS = [f.name for f in fields(QueryCounts)]
# The field each feedback type adds to, in the order of minielm.feedback.cut_objects.COUNT_COLUMN (a purchase
# only moves last_seen_ts).
_FEEDBACK_FIELDS = ("impressions", "clicks", "add_to_carts", None, "reformulations")


def count_events(totals: Totals, key: Callable[[str], str], served: Sequence = (), feedback: Sequence = ()) -> set[str]:
    """Add served requests and feedback events (structs or models) to the per-query ``totals`` (a
    ``defaultdict(QueryCounts)``); returns the query keys it touched. Events are grouped by query in Arrow
    and counted with ``bincount``, so the Python work is per distinct query, not per event."""
    touched: set[str] = set()
    if served:
        codes = [not event.product_ids for event in served]
        for query, (some, none), latest in _by_query(served, codes, 2):
            query_key = key(query)
            counts = totals[query_key]
            counts.volume += int(some + none)
            counts.zero_results += int(none)
            counts.last_seen_ts = max(counts.last_seen_ts, latest)
            touched.add(query_key)
    if feedback:
        codes = [COUNT_COLUMN[event.event_type] for event in feedback]
        for query, by_type, latest in _by_query(feedback, codes, len(_FEEDBACK_FIELDS)):
            query_key = key(query)
            counts = totals[query_key]
            for name, n in zip(_FEEDBACK_FIELDS, by_type.tolist()):
                if n and name is not None:
                    setattr(counts, name, getattr(counts, name) + n)
            counts.last_seen_ts = max(counts.last_seen_ts, latest)
            touched.add(query_key)
    return touched


def _by_query(events: Sequence, codes: list[int], n_codes: int):
    """(query, events per code, latest ts) for each distinct query of ``events``; ``codes[i]`` is event i's code."""
    encoded = pa.array([event.query for event in events], pa.string()).dictionary_encode()
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    queries = encoded.dictionary.to_pylist()
    counts = np.bincount(index * n_codes + np.asarray(codes, dtype=np.int64), minlength=len(queries) * n_codes)
    latest = np.zeros(len(queries))
    np.maximum.at(latest, index, np.asarray([event.ts for event in events], dtype=np.float64))
    return zip(queries, counts.reshape(-1, n_codes), latest.tolist())


def totals_frame(totals: Totals) -> pd.DataFrame:
    """A partition's committed totals as the rows of its S3 object."""
    frame = pd.DataFrame.from_records(
        [(key, *counts.as_tuple()) for key, counts in sorted(totals.items())], columns=list(TOTALS_COLUMNS)
    )
    return frame.astype(TOTALS_COLUMNS)


def totals_from_frame(frame: pd.DataFrame) -> Totals:
    missing = set(TOTALS_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"query totals object lacks columns {sorted(missing)}")
    columns = [frame[name].tolist() for name in COUNT_FIELDS]
    return {key: QueryCounts(*values) for key, *values in zip(frame["query_key"].tolist(), *columns)}


def feature_frame(values: dict[str, QueryCounts]) -> pd.DataFrame:
    """The ``query_stats`` feature rows of the given per-query counts."""
    rows = []
    for key in sorted(values):
        c = values[key]
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


class QueryKeys:
    """query_key with a cache: hot queries repeat, and hashing is a visible part of the per-event cost."""

    def __init__(self, size: int = 100_000) -> None:
        self._keys: dict[str, str] = {}
        self._size = size

    def __call__(self, query: str) -> str:
        key = self._keys.get(query)
        if key is None:
            if len(self._keys) >= self._size:
                self._keys.clear()
            key = self._keys[query] = query_key(query)
        return key


class QueryStatsPublisher:
    """Keeps the committed totals and the uncommitted counts of each partition and pushes their sums.

    The consumer loop reports events (``served``, ``feedback``), partitions it opens (``opened``) and
    cuts (``cut_totals`` before the write, ``cut_committed`` after the commit). Every ``interval_s`` the
    queries whose sum changed are pushed; a failed push keeps them for the next one after ``backoff_s``:
    features lag behind, the windows are unaffected. The other partitions' totals are re-read from S3
    every ``poll_s``.
    """

    def __init__(
        self,
        sink: QueryStatsSink | None,
        totals_store: TotalsStore,
        interval_s: float,
        backoff_s: float,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.totals_store = totals_store
        self.interval_s, self.backoff_s, self.poll_s = interval_s, backoff_s, poll_s
        self.key = QueryKeys()
        self.committed: dict[int, Totals] = {}  # partition -> its committed totals
        self.committed_keys: dict[int, str] = {}  # partition -> the S3 object they were read from
        self.uncommitted: dict[int, Totals] = {}  # own partitions only: consumed, not yet in a committed cut
        self.owned: set[int] = set()
        self.dirty: set[str] = set()
        self.pushed: dict[str, QueryCounts] = {}
        self.pushes = self.failures = 0
        self._pending_cuts: dict[int, tuple[Cut, Totals, Totals]] = {}
        self._last_push = self._last_poll = clock()
        self._backoff_until = 0.0

    @classmethod
    def for_config(
        cls, sink: QueryStatsSink | None, totals_store: TotalsStore, config: FeedbackConfig, clock: Callable[[], float]
    ) -> QueryStatsPublisher:
        """The aggregator's publisher: pushes every ``push_interval_s``, re-reads other partitions' totals about
        once a window."""
        return cls(
            sink,
            totals_store,
            config.push_interval_s,
            config.s3_retry_max_s,
            poll_s=max(config.push_interval_s, config.window_s),
            clock=clock,
        )

    # -- events and partitions ------------------------------------------------------------------

    def served(self, partition: int, events: Sequence[ServedRewrite]) -> None:
        """Count a batch of served requests of ``partition`` (consumed, not committed yet)."""
        self.dirty |= count_events(self._uncommitted(partition), self.key, served=events)

    def feedback(self, partition: int, events: Sequence[FeedbackEvent]) -> None:
        """Count a batch of feedback events of ``partition`` (consumed, not committed yet)."""
        self.dirty |= count_events(self._uncommitted(partition), self.key, feedback=events)

    def _uncommitted(self, partition: int) -> Totals:
        counts = self.uncommitted.get(partition)
        if counts is None:
            counts = self.uncommitted[partition] = defaultdict(QueryCounts)
        return counts

    def opened(self, partition: int, committed: pd.DataFrame | None, restored: Iterable[FeedbackEvent]) -> None:
        """A partition this member now owns: its committed totals (None: nothing committed yet), and the
        feedback the previous owner consumed but had not cut yet (restored from its state object)."""
        self.owned.add(partition)
        self._replace_committed(partition, totals_from_frame(committed) if committed is not None else {}, key=None)
        self.uncommitted.pop(partition, None)
        self.feedback(partition, list(restored))

    def keep_owned(self, owned: Iterable[int]) -> None:
        """Forget the uncommitted counts of partitions this member no longer owns (their new owner
        re-reads those events); their committed totals now come from S3."""
        owned = set(owned)
        for partition in self.owned - owned:
            for key in self.uncommitted.pop(partition, {}):
                self.dirty.add(key)
            self._pending_cuts.pop(partition, None)
            self.committed_keys.pop(partition, None)  # re-read at the next poll
        self.owned = owned

    # -- cuts -----------------------------------------------------------------------------------
    def cut_totals(self, cut: Cut) -> pd.DataFrame:
        """The partition's committed totals once ``cut`` is committed, to be written with it."""
        pending = self._pending_cuts.get(cut.partition)
        if pending is not None and pending[0] is cut:
            return totals_frame(pending[2])
        delta: Totals = defaultdict(QueryCounts)
        served = cut.window.served if cut.window is not None else ()
        count_events(delta, self.key, served, [*cut.feedback, *(event for _, event, _ in cut.late)])
        after = dict(self.committed.get(cut.partition, {}))
        for key, counts in delta.items():
            merged = QueryCounts(*after[key].as_tuple()) if key in after else QueryCounts()
            merged.add(counts)
            after[key] = merged
        self._pending_cuts[cut.partition] = (cut, delta, after)
        return totals_frame(after)

    def cut_committed(self, cut: Cut) -> None:
        """The cut's events move from the uncommitted counts into the committed totals."""
        pending = self._pending_cuts.pop(cut.partition, None)
        if pending is None or pending[0] is not cut:
            raise RuntimeError(f"cut of partition {cut.partition} committed without its query totals")
        _, delta, after = pending
        self.committed[cut.partition] = after
        uncommitted = self._uncommitted(cut.partition)
        for key, counts in delta.items():
            left = uncommitted[key]
            left.add(counts, sign=-1)
            if not any(left.as_tuple()[:-1]):  # every count is in the committed totals now
                del uncommitted[key]

    # -- pushing --------------------------------------------------------------------------------
    def push_due(self, now: float) -> None:
        """Read the other partitions' totals if ``poll_s`` passed, then push if the interval has passed
        and any query changed."""
        if self.sink is None:
            return
        if now - self._last_poll >= self.poll_s:
            self._last_poll = now
            self.poll_others()
        if not self.dirty or now - self._last_push < self.interval_s or now < self._backoff_until:
            return
        self._last_push = now
        self._push()

    def final_push(self) -> None:
        """On shutdown: push, then re-read the other partitions' totals and push again until nothing
        changed in between, so that whichever member pushes last pushes the complete totals."""
        if self.sink is None:
            return
        for _ in range(FINAL_PUSH_ROUNDS):
            self.poll_others()
            if not self.dirty:
                return
            if not self._push():
                time.sleep(FINAL_PUSH_RETRY_S)
        log.warning("query statistics still changing or not pushed at shutdown", queries=len(self.dirty))

    def poll_others(self) -> None:
        """Re-read the committed totals of partitions this member does not own where they changed."""
        try:
            latest = self.totals_store.latest_totals_keys()
        except Exception as error:  # stale features, never wrong counts; the next poll tries again
            log.warning("could not list the other partitions' query totals", error=str(error)[:200])
            return
        for partition, key in latest.items():
            if partition in self.owned or self.committed_keys.get(partition) == key:
                continue
            try:
                frame = self.totals_store.read_totals(key)
            except Exception as error:
                log.warning("could not read query totals", key=key, error=str(error)[:200])
                continue
            if frame is not None:
                self._replace_committed(partition, totals_from_frame(frame), key)

    def _replace_committed(self, partition: int, totals: Totals, key: str | None) -> None:
        before = self.committed.get(partition, {})
        self.dirty.update(k for k in before.keys() | totals.keys() if before.get(k) != totals.get(k))
        self.committed[partition] = totals
        if key is not None:
            self.committed_keys[partition] = key

    def value(self, key: str) -> QueryCounts:
        """What this member knows of ``key``: every partition's committed totals plus its own uncommitted."""
        total = QueryCounts()
        for source in (self.committed, self.uncommitted):
            for counts in source.values():
                part = counts.get(key)
                if part is not None:
                    total.add(part)
        return total

    def _push(self) -> bool:
        keys, self.dirty = self.dirty, set()
        values = {key: self.value(key) for key in keys}
        values = {key: counts for key, counts in values.items() if self.pushed.get(key) != counts}
        if not values:
            return True
        try:
            self.sink.push(feature_frame(values))
        except Exception as error:  # features lag behind but the windows (the record) are unaffected
            self.failures += 1
            self.dirty.update(keys)
            self._backoff_until = self._last_push + self.backoff_s
            log.warning("query stats push to Feast failed; will retry", error=f"{type(error).__name__}: {error}"[:300])
            return False
        self.pushes += 1
        self.pushed.update(values)
        return True
