"""The feedback aggregator: joins served rewrites with shopper feedback and writes windows to S3.

A kafka-python consumer group reads the rewrites and the feedback topic. Both are keyed by request id,
so partition p of one topic holds the feedback of the requests in partition p of the other; the range
assignor gives one member both. Per partition pair a :class:`PartitionJoin` keeps:

- open windows: served requests collect for ``window_s``, then the window waits ``grace_s`` for
  feedback (late events within the grace period count), then it is *cut*;
- feedback whose request is not known yet (pending), and feedback that came too late (after its
  window was written) or never matched a request (after ``unmatched_after_s``): the late-events table.

A cut writes, in this order: the window object (key = rewrites topic, partition, offset range, with the
feedback offset it joined up to in its metadata), the late events decided since the last cut (key =
feedback offset range), and a state object holding every consumed feedback event not yet in any object.
Only then are the offsets committed. A restarted member resumes from the committed offsets and that
state object; if a window object starting at the committed offset already exists (the previous owner
died between write and commit) it reproduces exactly that cut, so the replay overwrites the same
objects and every event ends up in exactly one of them. Invalid events go to the dead-letter topic.

Query statistics are pushed to Feast every ``push_interval_s``, independently of the windows, so a
feature is fresh within about a second of its event.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
import pyarrow.parquet as pq
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from minielm.config import FeedbackConfig, Settings
from minielm.features.keys import query_key
from minielm.feedback.events import DeadLetter, FeedbackEvent, ServedRewrite, parse_event
from minielm.feedback.windows import (
    LATE_COLUMNS,
    WINDOW_COLUMNS,
    encode_frame,
    object_key,
    parse_key,
    partition_prefix,
    read_metadata,
)
from minielm.kafka_io import make_consumer, make_producer
from minielm.logs import get_logger
from minielm.storage import ObjectNotFound, ObjectStore

log = get_logger(__name__)

SPILL_COLUMNS = {"offset": "int64", "event_json": "string"}
RECENTLY_CLOSED_LIMIT = 200_000
# A feedback partition silent this long counts as caught up (a busy one may pause between fetches).
FEEDBACK_IDLE_S = 2.0


class AggregatorError(RuntimeError):
    """The aggregator cannot go on safely (e.g. topics not co-partitioned, broker log reset)."""


# -- rows and windows -------------------------------------------------------------------------------
@dataclass
class RequestRow:
    served: ServedRewrite
    feedback: list[tuple[int, FeedbackEvent]] = field(default_factory=list)


@dataclass
class Window:
    first_offset: int
    opened_at: float
    last_offset: int = -1
    max_ts: float = 0.0
    rows: dict[str, RequestRow] = field(default_factory=dict)
    close_at: float | None = None  # set when the window stops collecting requests

    @property
    def sealed(self) -> bool:
        return self.close_at is not None


def reward(clicks: int, add_to_carts: int, purchases: int, reformulated: bool, config: FeedbackConfig) -> float:
    """Weighted engagement minus the reformulation penalty (weights from the feedback config)."""
    return (
        config.click_weight * clicks
        + config.add_to_cart_weight * add_to_carts
        + config.purchase_weight * purchases
        - config.reformulation_penalty * float(reformulated)
    )


def window_frame(rows: Iterable[RequestRow], config: FeedbackConfig) -> pd.DataFrame:
    """One row per served request with its engagement counts and reward."""
    records = []
    for row in rows:
        served = row.served
        counts = defaultdict(int)
        for _, event in row.feedback:
            counts[event.event_type] += 1
        reformulated = counts["reformulation"] > 0
        records.append(
            {
                "request_id": served.request_id,
                "query": served.query,
                "query_key": query_key(served.query),
                "rewrite": served.rewrite,
                "model_name": served.model_name,
                "model_version": served.model_version,
                "ts": served.ts,
                "n_results": len(served.product_ids),
                "impressions": counts["impression"],
                "clicks": counts["click"],
                "add_to_carts": counts["add_to_cart"],
                "purchases": counts["purchase"],
                "reformulated": reformulated,
                "reward": reward(counts["click"], counts["add_to_cart"], counts["purchase"], reformulated, config),
                "feedback_events": len(row.feedback),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(WINDOW_COLUMNS))


def late_frame(late: list[tuple[int, FeedbackEvent, str]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(
        [
            {
                "offset": offset,
                "event_type": event.event_type,
                "request_id": event.request_id,
                "query": event.query,
                "product_id": event.product_id,
                "position": event.position,
                "ts": event.ts,
                "reason": reason,
                "event_json": event.model_dump_json(),
            }
            for offset, event, reason in late
        ],
        columns=list(LATE_COLUMNS),
    )


@dataclass
class Cut:
    """Everything one cut writes and commits; computed once, retried until it is durable."""

    partition: int
    window: Window | None
    rewrites_next: int
    feedback_next: int
    late: list[tuple[int, FeedbackEvent, str]]
    objects: list[tuple[str, bytes]]
    attempts: int = 0
    written: bool = False
    retry_at: float = 0.0


# -- one partition pair ----------------------------------------------------------------------------
class PartitionJoin:
    """The join state of rewrites partition p with feedback partition p, between two commits."""

    def __init__(
        self,
        partition: int,
        rewrites_topic: str,
        feedback_topic: str,
        rewrites_next: int,
        feedback_next: int,
        config: FeedbackConfig,
        forced: dict | None = None,
        group_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partition = partition
        self.clock = clock
        self.group_id = group_id
        self.rewrites_topic, self.feedback_topic = rewrites_topic, feedback_topic
        self.config = config
        self.rewrites_next = rewrites_next  # next rewrites offset to read
        self.feedback_next = feedback_next
        self.committed = (rewrites_next, feedback_next)
        self.windows: deque[Window] = deque()
        self.open_requests: dict[str, tuple[Window, RequestRow]] = {}
        self.pending: dict[str, list[tuple[int, FeedbackEvent]]] = defaultdict(list)
        self.late: list[tuple[int, FeedbackEvent, str]] = []
        self.closed: OrderedDict[str, None] = OrderedDict()
        self.max_feedback_ts = 0.0
        self.forced = forced  # {"rewrites_last", "feedback_next", "first_request_id"} of a cut to reproduce
        self.deferred: list[tuple[str, int, object]] = []
        self.inflight: Cut | None = None
        self.last_cut_at = clock()
        self.last_feedback_at = clock()
        self.feedback_highwater: int | None = None  # from the consumer's fetch responses, when known

    # -- events --------------------------------------------------------------------------------
    def add_rewrite(self, offset: int, event: ServedRewrite, now: float) -> str | None:
        """Join a served request; returns a dead-letter reason for a duplicate request id."""
        if self.forced and offset > self.forced["rewrites_last"]:
            self.deferred.append(("rewrite", offset, event))
            return None
        self.rewrites_next = offset + 1
        if (
            self.forced
            and offset == self.forced["rewrites_first"]
            and event.request_id != self.forced["first_request_id"]
        ):
            raise AggregatorError(
                f"rewrites partition {self.partition} offset {offset} holds request {event.request_id!r}, but the "
                f"window object written for that offset starts with {self.forced['first_request_id']!r}: the "
                "broker's log was reset under the aggregator; point feedback.windows_prefix at a new prefix"
            )
        if event.request_id in self.open_requests or event.request_id in self.closed:
            return f"duplicate request_id {event.request_id!r} (already served in this partition)"
        if not self.windows or self.windows[-1].sealed:
            self.windows.append(Window(first_offset=offset, opened_at=now))
        window = self.windows[-1]
        row = RequestRow(event, self.pending.pop(event.request_id, []))
        window.rows[event.request_id] = row
        window.last_offset = offset
        window.max_ts = max(window.max_ts, event.ts)
        self.open_requests[event.request_id] = (window, row)
        return None

    def add_feedback(self, offset: int, event: FeedbackEvent) -> None:
        if self.forced and offset >= self.forced["feedback_next"]:
            self.deferred.append(("feedback", offset, event))
            return
        self.feedback_next = offset + 1
        self.last_feedback_at = self.clock()
        self._place_feedback(offset, event)

    def _place_feedback(self, offset: int, event: FeedbackEvent) -> None:
        self.max_feedback_ts = max(self.max_feedback_ts, event.ts)
        opened = self.open_requests.get(event.request_id)
        if opened is not None:
            opened[1].feedback.append((offset, event))
        elif event.request_id in self.closed:
            self.late.append((offset, event, "late"))
        else:
            self.pending[event.request_id].append((offset, event))

    def skip(self, is_rewrites: bool, offset: int) -> None:
        """A record that went to the dead-letter topic: consumed, but in no window."""
        if self.forced:
            bound = self.forced["rewrites_last"] if is_rewrites else self.forced["feedback_next"] - 1
            if offset > bound:
                return
        if is_rewrites:
            self.rewrites_next = max(self.rewrites_next, offset + 1)
        else:
            self.feedback_next = max(self.feedback_next, offset + 1)

    def restore(self, spilled: Iterable[tuple[int, FeedbackEvent]]) -> None:
        """Feedback consumed before the last commit but not yet in any object (from the state object)."""
        for offset, event in spilled:
            self._place_feedback(offset, event)

    # -- cuts ----------------------------------------------------------------------------------
    def seal_due(self, now: float) -> None:
        if self.windows and not self.windows[-1].sealed and now - self.windows[-1].opened_at >= self.config.window_s:
            self.windows[-1].close_at = now + self.config.grace_s

    def next_cut(self, now: float) -> Cut | None:
        """The cut to write now, if one is due (never while another is in flight)."""
        if self.inflight is not None:
            return None
        if self.forced:
            return self._forced_cut()
        self.seal_due(now)
        if (
            self.windows
            and self.windows[0].sealed
            and now >= self.windows[0].close_at
            and self._feedback_caught_up(self.windows[0], now)
        ):
            return self._make_cut(self.windows[0], self.feedback_next)
        idle = now - self.last_cut_at >= self.config.window_s
        if idle and self.feedback_next > self.committed[1] and (self.late or self._expire_unmatched(dry=True)):
            return self._make_cut(None, self.feedback_next)
        return None

    def _feedback_caught_up(self, window: Window, now: float) -> bool:
        """The feedback stream has passed the window's requests by the grace period in event time, or has
        been read to its end (high watermark; a long silence where the broker does not say).

        Without this, a member catching up on a backlog would cut windows before reading their feedback."""
        if self.max_feedback_ts >= window.max_ts + self.config.grace_s:
            return True
        if self.feedback_highwater is not None:
            return self.feedback_next >= self.feedback_highwater
        return now - self.last_feedback_at >= max(self.config.grace_s, FEEDBACK_IDLE_S)

    def drain_cuts(self) -> Cut | None:
        """On shutdown: seal and cut every open window at once, oldest first."""
        if self.inflight is not None or self.forced:
            return self.next_cut(self.clock())
        if self.windows:
            self.windows[0].close_at = self.windows[0].close_at or 0.0
            return self._make_cut(self.windows[0], self.feedback_next)
        if self.feedback_next > self.committed[1]:
            return self._make_cut(None, self.feedback_next)
        return None

    def _forced_cut(self) -> Cut | None:
        forced = self.forced
        if self.rewrites_next <= forced["rewrites_last"] or self.feedback_next < forced["feedback_next"]:
            return None
        window = self.windows[0] if self.windows else Window(first_offset=-1, opened_at=0.0)
        if window.first_offset != forced["rewrites_first"] or window.last_offset != forced["rewrites_last"]:
            raise AggregatorError(
                f"cannot reproduce window {forced['key']}: re-read offsets {window.first_offset}-{window.last_offset}"
            )
        window.close_at = window.close_at or 0.0
        return self._make_cut(window, forced["feedback_next"])

    def _expire_unmatched(self, dry: bool = False) -> bool:
        horizon = self.max_feedback_ts - self.config.unmatched_after_s
        expired = [rid for rid, events in self.pending.items() if events and max(e.ts for _, e in events) < horizon]
        if not dry:
            for rid in expired:
                self.late.extend((offset, event, "unmatched") for offset, event in self.pending.pop(rid))
        return bool(expired)

    def _make_cut(self, window: Window | None, feedback_next: int) -> Cut:
        if feedback_next > self.committed[1]:
            self._expire_unmatched()
        # Late events are keyed by the feedback offsets of this cut; with none, they wait for the next cut.
        late = sorted(self.late, key=lambda item: item[0]) if feedback_next > self.committed[1] else []
        if window is not None:
            rewrites_next = window.last_offset + 1
        elif self.windows:
            rewrites_next = self.windows[0].first_offset
        else:
            rewrites_next = self.rewrites_next
        objects: list[tuple[str, bytes]] = []
        config = self.config
        if window is not None:
            metadata = {
                "rewrites_first": window.first_offset,
                "rewrites_last": window.last_offset,
                "feedback_prev": self.committed[1],
                "feedback_next": feedback_next,
                "first_request_id": next(iter(window.rows)),
            }
            key = object_key(
                config.windows_prefix, self.rewrites_topic, self.partition, window.first_offset, window.last_offset
            )
            objects.append((key, encode_frame(window_frame(window.rows.values(), config), WINDOW_COLUMNS, metadata)))
        if late:
            key = object_key(
                config.late_prefix, self.feedback_topic, self.partition, self.committed[1], feedback_next - 1
            )
            objects.append((key, encode_frame(late_frame(late), LATE_COLUMNS)))
        held = [
            (offset, event)
            for w in self.windows
            if w is not window
            for row in w.rows.values()
            for offset, event in row.feedback
        ]
        held += [item for events in self.pending.values() for item in events]
        spill = pd.DataFrame({"offset": [o for o, _ in held], "event_json": [e.model_dump_json() for _, e in held]})
        objects.append((self.state_key(config, rewrites_next, feedback_next), encode_frame(spill, SPILL_COLUMNS)))
        return Cut(self.partition, window, rewrites_next, feedback_next, late, objects)

    def state_key(self, config: FeedbackConfig, rewrites_next: int, feedback_next: int) -> str:
        return (
            f"{config.state_prefix}/group={self.group_id}/topic={self.rewrites_topic}/partition={self.partition}/"
            f"cut={rewrites_next}-{feedback_next}.parquet"
        )

    def cut_done(self, cut: Cut) -> None:
        """The cut is written and committed: forget what it made durable."""
        if cut.window is not None:
            self.windows.remove(cut.window)
            for request_id in cut.window.rows:
                self.open_requests.pop(request_id, None)
                self.closed[request_id] = None
            while len(self.closed) > RECENTLY_CLOSED_LIMIT:
                self.closed.popitem(last=False)
        written = {id(item) for item in cut.late}
        self.late = [item for item in self.late if id(item) not in written]
        self.committed = (cut.rewrites_next, cut.feedback_next)
        self.inflight = None
        self.last_cut_at = self.clock()
        if self.forced is not None:
            self.forced = None
            deferred, self.deferred = self.deferred, []
            for kind, offset, event in deferred:
                if kind == "rewrite":
                    self.add_rewrite(offset, event, self.clock())
                else:
                    self.add_feedback(offset, event)


# -- Feast query statistics --------------------------------------------------------------------------
class QueryStatsSink(Protocol):
    def push(self, frame: pd.DataFrame) -> None:
        """Make the per-query statistics in ``frame`` visible to online feature reads."""


class FeastQueryStatsSink:
    """Pushes to the ``query_stats_push`` source of the applied Feast repo (online store)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = None

    def push(self, frame: pd.DataFrame) -> None:
        from feast.data_source import PushMode

        from minielm.features.repo import QUERY_STATS_PUSH, feature_store

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
        frame = pd.DataFrame.from_records(
            rows,
            columns=[
                "query_key",
                "volume",
                "ctr",
                "add_to_cart_rate",
                "reformulation_rate",
                "zero_result_rate",
                "last_seen_ts",
            ],
        )
        frame = frame.astype(
            {
                "volume": "int64",
                "ctr": "float32",
                "add_to_cart_rate": "float32",
                "reformulation_rate": "float32",
                "zero_result_rate": "float32",
                "last_seen_ts": "float64",
            }
        )
        frame["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("us")
        return frame


# -- the consumer loop -------------------------------------------------------------------------------
@dataclass
class AggregatorStats:
    consumed: int = 0
    served: int = 0
    feedback: int = 0
    dead_letters: int = 0
    windows_written: int = 0
    late_written: int = 0
    commits: int = 0
    s3_failures: int = 0
    pushes: int = 0
    push_failures: int = 0
    window_keys: list[str] = field(default_factory=list)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def on_partitions_revoked(self, revoked):
        self.aggregator._revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self.aggregator._assigned(assigned)


class Aggregator:
    """Consume, join, write windows, commit; see the module docstring for the guarantees."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore | None = None,
        sink: QueryStatsSink | None = None,
        group_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = settings.feedback
        self.topics = settings.kafka.topics
        self.group_id = group_id or settings.kafka.consumer_group
        self.store = store or ObjectStore(settings.s3)
        if sink is None and self.config.push_to_feast:
            sink = FeastQueryStatsSink(settings)
        self.sink = sink
        self.clock = clock
        self.joins: dict[int, PartitionJoin] = {}
        self.stats = AggregatorStats()
        self.query_stats = QueryStats()
        self.stop_event = threading.Event()
        self._last_push = clock()
        self._last_record_at = clock()
        self._push_backoff_until = 0.0
        self.consumer = None
        self.producer = None
        self._assignment = None

    # -- lifecycle -----------------------------------------------------------------------------
    def _connect(self) -> None:
        kafka = self.settings.kafka
        self.consumer = make_consumer(
            kafka,
            group_id=self.group_id,
            max_poll_records=self.config.max_poll_records,
            partition_assignment_strategy=(RangePartitionAssignor,),
            reconnect_backoff_max_ms=2000,
            check_crcs=self.config.check_crcs,
        )
        self.consumer.subscribe([self.topics.rewrites, self.topics.feedback], listener=_Rebalance(self))
        self.producer = make_producer(kafka)

    def run(
        self,
        until_idle_s: float | None = None,
        max_seconds: float | None = None,
        on_progress: Callable[[AggregatorStats], None] | None = None,
    ) -> AggregatorStats:
        """Consume until stopped (``stop()``, ``until_idle_s`` without records, or ``max_seconds``), then
        drain: cut every open window so nothing consumed stays unwritten."""
        self._connect()
        started = self.clock()
        try:
            while not self.stop_event.is_set():
                records = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms)
                if self._assignment is not None:
                    self._open_assigned()
                    self._last_record_at = self.clock()
                    records = {}  # fetched before the seek to the committed offsets: read again
                now = self.clock()
                for tp, batch in records.items():
                    self._handle_batch(tp, batch, now)
                self._cuts(now)
                self._push(now)
                if on_progress is not None:
                    on_progress(self.stats)
                if until_idle_s is not None and now - self._last_record_at >= until_idle_s and self._settled():
                    break
                if max_seconds is not None and now - started >= max_seconds:
                    break
            self._drain()
            self._push(self.clock(), force=True)
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close()
        log.info("aggregator stopped", **{k: v for k, v in vars(self.stats).items() if k != "window_keys"})
        return self.stats

    def stop(self) -> None:
        self.stop_event.set()

    def _settled(self) -> bool:
        return bool(self.joins) and all(j.inflight is None and not j.forced for j in self.joins.values())

    # -- rebalance -----------------------------------------------------------------------------
    # The listener runs on kafka-python's IO thread and must not block: it only pauses new partitions
    # and notes them; the loop then reads their committed offsets and state and seeks (_open_assigned).
    def _revoked(self, revoked) -> None:
        for tp in revoked:
            if self.joins.pop(tp.partition, None) is not None:
                log.info("partition revoked; its uncommitted work goes to the next owner", partition=tp.partition)

    def _assigned(self, assigned) -> None:
        self.consumer.pause(*assigned)
        self._assignment = list(assigned)

    def _open_assigned(self) -> None:
        assigned, self._assignment = self._assignment, None
        by_topic = defaultdict(set)
        for tp in assigned:
            by_topic[tp.topic].add(tp.partition)
        rewrites, feedback = by_topic[self.topics.rewrites], by_topic[self.topics.feedback]
        if rewrites != feedback:
            raise AggregatorError(
                f"topics {self.topics.rewrites} and {self.topics.feedback} are not co-partitioned: "
                f"assigned partitions {sorted(rewrites)} vs {sorted(feedback)}; create both with "
                "kafka.partitions partitions"
            )
        for partition in sorted(rewrites):
            if partition not in self.joins:
                self.joins[partition] = self._open_partition(partition)
        self.consumer.resume(*assigned)

    def _open_partition(self, partition: int) -> PartitionJoin:
        tp_r = TopicPartition(self.topics.rewrites, partition)
        tp_f = TopicPartition(self.topics.feedback, partition)
        committed_r = self.consumer.committed(tp_r)
        committed_f = self.consumer.committed(tp_f)
        begin = self.consumer.beginning_offsets([tp_r, tp_f])
        rewrites_next = committed_r if committed_r is not None else begin[tp_r]
        feedback_next = committed_f if committed_f is not None else begin[tp_f]
        keys = self._window_keys(partition)
        forced = self._written_but_uncommitted(keys, rewrites_next)
        join = PartitionJoin(
            partition,
            self.topics.rewrites,
            self.topics.feedback,
            rewrites_next,
            feedback_next,
            self.config,
            forced,
            group_id=self.group_id,
            clock=self.clock,
        )
        join.closed.update(self._recently_closed(keys, rewrites_next))
        if committed_r is not None or committed_f is not None:
            join.restore(self._read_spill(join, rewrites_next, feedback_next))
        self.consumer.seek(tp_r, rewrites_next)
        self.consumer.seek(tp_f, feedback_next)
        log.info(
            "partition assigned",
            partition=partition,
            rewrites_next=rewrites_next,
            feedback_next=feedback_next,
            reproducing=forced["key"] if forced else None,
        )
        return join

    def _window_keys(self, partition: int) -> list:
        prefix = partition_prefix(self.config.windows_prefix, self.topics.rewrites, partition)
        keys = self._retry_s3(lambda: list(self.store.list_keys(prefix)), "list windows")
        return sorted(parse_key(key) for key in keys if key.endswith(".parquet"))

    def _recently_closed(self, refs: list, rewrites_next: int) -> dict[str, None]:
        """Request ids of the latest committed windows, so that their feedback arriving after a restart is
        recognised as late at once (instead of waiting ``unmatched_after_s`` as unknown)."""
        closed: dict[str, None] = {}
        newest_ts = None
        for ref in reversed([r for r in refs if r.last_offset < rewrites_next]):
            data = self._retry_s3(lambda key=ref.key: self.store.get_bytes(key), "read window")
            table = pq.read_table(io.BytesIO(data), columns=["request_id", "ts"]).to_pydict()
            if not table["ts"]:
                continue
            newest_ts = newest_ts if newest_ts is not None else max(table["ts"])
            closed.update(dict.fromkeys(table["request_id"]))
            if len(closed) >= RECENTLY_CLOSED_LIMIT or max(table["ts"]) < newest_ts - self.config.unmatched_after_s:
                break
        return closed

    def _written_but_uncommitted(self, refs: list, rewrites_next: int) -> dict | None:
        # Windows are committed one at a time, so at most one object can lie beyond the committed offset.
        beyond = [ref for ref in refs if ref.first_offset >= rewrites_next]
        if not beyond:
            return None
        ref = beyond[0]
        metadata = read_metadata(self._retry_s3(lambda: self.store.get_bytes(ref.key), "read window"))
        return {
            "key": ref.key,
            "rewrites_first": ref.first_offset,
            "rewrites_last": ref.last_offset,
            "feedback_next": metadata["feedback_next"],
            "first_request_id": metadata["first_request_id"],
        }

    def _read_spill(self, join: PartitionJoin, rewrites_next: int, feedback_next: int) -> list:
        key = join.state_key(self.config, rewrites_next, feedback_next)
        try:
            frame = self._retry_s3(lambda: self.store.get_parquet(key), "read state")
        except ObjectNotFound:
            log.warning("no aggregator state object for the committed offsets; starting empty", key=key)
            return []
        return [(int(o), FeedbackEvent.model_validate_json(j)) for o, j in zip(frame["offset"], frame["event_json"])]

    # -- records -------------------------------------------------------------------------------
    def _handle_batch(self, tp: TopicPartition, batch, now: float) -> None:
        join = self.joins.get(tp.partition)
        if join is None:
            return
        self._last_record_at = now
        is_rewrites = tp.topic == self.topics.rewrites
        stats = self.stats
        for record in batch:
            stats.consumed += 1
            event = parse_event(record.value, topic=tp.topic, partition=tp.partition, offset=record.offset)
            if not isinstance(event, DeadLetter) and is_rewrites != (event.event_type == "served_rewrite"):
                expected = "served_rewrite" if is_rewrites else "a feedback event"
                event = DeadLetter(
                    reason=f"event_type {event.event_type!r} on topic {tp.topic}, which carries {expected}",
                    error_kind="wrong_topic",
                    original=record.value,
                    source_topic=tp.topic,
                    source_partition=tp.partition,
                    source_offset=record.offset,
                )
            if isinstance(event, DeadLetter):
                self._dead_letter(event, record.key)
                join.skip(is_rewrites, record.offset)
                continue
            if is_rewrites:
                problem = join.add_rewrite(record.offset, event, now)
                if problem:
                    self._dead_letter(
                        DeadLetter(
                            reason=problem,
                            error_kind="duplicate",
                            original=record.value,
                            source_topic=tp.topic,
                            source_partition=tp.partition,
                            source_offset=record.offset,
                        ),
                        record.key,
                    )
                    continue
                stats.served += 1
                self.query_stats.served(event)
            else:
                join.add_feedback(record.offset, event)
                stats.feedback += 1
                self.query_stats.feedback(event)

    def _dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        self.stats.dead_letters += 1
        self.producer.send(self.topics.dead_letter, key=key, value=letter.to_bytes())
        log.warning(
            "event sent to the dead-letter topic",
            reason=letter.reason[:200],
            kind=letter.error_kind,
            topic=letter.source_topic,
            partition=letter.source_partition,
            offset=letter.source_offset,
        )

    # -- cuts: write, then commit ---------------------------------------------------------------
    def _cuts(self, now: float) -> None:
        for join in list(self.joins.values()):
            join.feedback_highwater = self.consumer.highwater(TopicPartition(self.topics.feedback, join.partition))
            cut = join.inflight or join.next_cut(now)
            if cut is not None and now >= cut.retry_at:
                self._apply(join, cut, now)

    def _drain(self) -> None:
        deadline = self.clock() + max(30.0, self.config.s3_retry_max_s * 3)
        for join in list(self.joins.values()):
            while self.clock() < deadline and join.partition in self.joins:
                cut = join.inflight or join.drain_cuts()
                if cut is None:
                    break
                if not self._apply(join, cut, self.clock()):
                    time.sleep(max(0.0, cut.retry_at - self.clock()))

    def _apply(self, join: PartitionJoin, cut: Cut, now: float) -> bool:
        """Write the cut's objects, flush dead letters, commit; on failure retry later, never commit."""
        join.inflight = cut
        tps = [
            TopicPartition(self.topics.rewrites, join.partition),
            TopicPartition(self.topics.feedback, join.partition),
        ]
        try:
            if not cut.written:
                for key, data in cut.objects:
                    self.store.put_bytes(key, data, "application/vnd.apache.parquet")
                cut.written = True
            self.producer.flush(timeout=self.settings.kafka.request_timeout_ms / 1000)
            self.consumer.commit(
                {
                    tps[0]: OffsetAndMetadata(cut.rewrites_next, "", -1),
                    tps[1]: OffsetAndMetadata(cut.feedback_next, "", -1),
                }
            )
        except CommitFailedError as error:
            log.warning(
                "commit rejected (rebalance); the next owner replays this cut",
                partition=join.partition,
                error=str(error),
            )
            self.joins.pop(join.partition, None)
            return False
        except Exception as error:  # S3 or broker unavailable: back off, keep polling, do not commit.
            cut.attempts += 1
            self.stats.s3_failures += not cut.written
            delay = min(self.config.s3_retry_initial_s * 2 ** (cut.attempts - 1), self.config.s3_retry_max_s)
            cut.retry_at = now + delay
            self.consumer.pause(*tps)
            log.warning(
                "cut not durable yet; retrying with backoff",
                partition=join.partition,
                stage="commit" if cut.written else "s3 write",
                attempt=cut.attempts,
                retry_in_s=delay,
                error=f"{type(error).__name__}: {error}"[:300],
            )
            return False
        if cut.attempts:
            self.consumer.resume(*tps)
        join.cut_done(cut)
        self.stats.commits += 1
        if cut.window is not None:
            self.stats.windows_written += 1
            self.stats.window_keys.append(cut.objects[0][0])
        if cut.late:
            self.stats.late_written += len(cut.late)
        self._delete_old_state(join, cut)
        log.info(
            "window cut",
            partition=join.partition,
            key=cut.objects[0][0] if cut.window else None,
            requests=len(cut.window.rows) if cut.window else 0,
            late=len(cut.late),
            rewrites_next=cut.rewrites_next,
            feedback_next=cut.feedback_next,
        )
        return True

    def _delete_old_state(self, join: PartitionJoin, cut: Cut) -> None:
        """State objects of earlier cuts are no longer needed once a later cut is committed."""
        current = cut.objects[-1][0]
        prefix = current.rsplit("/", 1)[0] + "/"
        try:
            for key in self.store.list_keys(prefix):
                if key != current:
                    self.store.delete(key)
        except Exception as error:  # cleanup only; the next cut tries again
            log.warning("could not delete old aggregator state", error=str(error)[:200])

    def _retry_s3(self, action: Callable, what: str):
        delay = self.config.s3_retry_initial_s
        while True:
            try:
                return action()
            except ObjectNotFound:
                raise
            except Exception as error:
                if self.stop_event.is_set():
                    raise
                log.warning("s3 unavailable; retrying", action=what, retry_in_s=delay, error=str(error)[:200])
                time.sleep(delay)
                delay = min(delay * 2, self.config.s3_retry_max_s)

    # -- Feast -----------------------------------------------------------------------------------
    def _push(self, now: float, force: bool = False) -> None:
        if self.sink is None or not self.query_stats.touched:
            return
        if not force and (now - self._last_push < self.config.push_interval_s or now < self._push_backoff_until):
            return
        self._last_push = now
        frame = self.query_stats.take_frame()
        try:
            self.sink.push(frame)
            self.stats.pushes += 1
        except Exception as error:  # features lag behind but the windows (the record) are unaffected
            self.stats.push_failures += 1
            self.query_stats.touched.update(frame["query_key"])
            self._push_backoff_until = now + self.config.s3_retry_max_s
            log.warning("query stats push to Feast failed; will retry", error=f"{type(error).__name__}: {error}"[:300])


def run_aggregator(settings: Settings, **kwargs) -> AggregatorStats:
    """Build and run an aggregator (the CLI and the demo call this)."""
    run_options = {k: kwargs.pop(k) for k in ("until_idle_s", "max_seconds", "on_progress") if k in kwargs}
    return Aggregator(settings, **kwargs).run(**run_options)


def describe(stats: AggregatorStats) -> str:
    return json.dumps({k: v for k, v in vars(stats).items() if k != "window_keys"})
