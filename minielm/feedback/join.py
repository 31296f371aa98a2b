"""The join of served rewrites with shopper feedback for one partition pair, and the cuts it writes.

Both topics are keyed by request id, so partition p of one holds the feedback of the requests in
partition p of the other. A :class:`PartitionJoin` keeps, between two commits:

- open windows: served requests collect for ``window_s``, then the window waits ``grace_s`` for
  feedback (late events within the grace period count), then it is *cut*;
- feedback whose request is not known yet (pending), and feedback that came too late (after its
  window was written) or never matched a request (after ``unmatched_after_s``): the late-events table.

A cut is, in this order: the window object (key = rewrites topic, partition, offset range, with the
feedback offset it joined up to in its metadata), the late events decided since the last cut (key =
feedback offset range), and a state object holding every consumed feedback event not yet in any object.
The consumer loop (:mod:`minielm.feedback.aggregator`) writes them, then commits. A restarted member
resumes from the committed offsets and that state object; if a window object starting at the committed
offset already exists (the previous owner died between write and commit) the join reproduces exactly
that cut, so the replay overwrites the same objects and every event ends up in exactly one of them.
Nothing here touches Kafka or S3: the functions at the end turn objects read by the caller into state.

The state is columnar, so that the consumer loop hands over whole batches (``add_rewrites``,
``add_feedbacks``) and pays a few C-level list and dict operations per event: served requests are numbered
rows (``open_requests`` maps a request id to its row, a window holds a range of rows), and the feedback
joined to open rows is one log of (row, offset, event) in three aligned lists. A batch with a duplicate
request id, or a partition reproducing a written cut, goes event by event with the same rules.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from minielm.config import FeedbackConfig
from minielm.errors import ServiceError
from minielm.feedback.cut_objects import encode_late, encode_spill, encode_window
from minielm.feedback.events import FeedbackEvent
from minielm.feedback.windows import ObjectRef, object_key, read_metadata

RECENTLY_CLOSED_LIMIT = 200_000
# A feedback partition silent this long counts as caught up (a busy one may pause between fetches).
FEEDBACK_IDLE_S = 2.0


class AggregatorError(ServiceError):
    """The aggregator cannot go on safely (e.g. topics not co-partitioned, broker log reset)."""


@dataclass
class Window:
    """Served requests that collect for ``window_s``, then wait for their feedback, then are cut together.

    They are rows ``first_row`` to ``end_row - 1`` of the partition's row numbering, in offset order."""

    first_offset: int
    opened_at: float
    first_row: int
    last_offset: int = -1
    max_ts: float = 0.0
    served: list = field(default_factory=list)
    close_at: float | None = None  # set when the window stops collecting requests

    @property
    def sealed(self) -> bool:
        return self.close_at is not None

    @property
    def end_row(self) -> int:
        return self.first_row + len(self.served)


@dataclass
class Cut:
    """Everything one cut writes and commits; computed once, retried until it is durable."""

    partition: int
    window: Window | None
    rewrites_next: int
    feedback_next: int
    late: list[tuple[int, FeedbackEvent, str]]
    objects: list[tuple[str, bytes]]
    feedback: list = field(default_factory=list)  # the feedback events joined into the window's rows
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
        self.next_row = 0
        self.open_requests: dict[str, int] = {}  # request id -> its row, while its window is open
        # Feedback joined to an open row, in arrival order: three aligned lists.
        self.joined_rows: list[int] = []
        self.joined_offsets: list[int] = []
        self.joined_events: list = []
        self.pending: dict[str, list[tuple[int, FeedbackEvent]]] = defaultdict(list)
        self.pending_latest: dict[str, float] = {}  # request id -> its pending feedback's latest ts
        self.late: list[tuple[int, FeedbackEvent, str]] = []
        self.closed: dict[str, None] = {}  # request ids of recently cut windows, oldest first
        self.max_feedback_ts = 0.0
        self.max_rewrite_ts = 0.0
        self.feedback_held = False  # the consumer paused the feedback partition (see feedback_ahead)
        # The written but uncommitted cut to reproduce (see written_but_uncommitted): its object "key", the
        # "rewrites_first" and "rewrites_last" offsets, "feedback_next" and the window's "first_request_id".
        self.forced = forced
        self.deferred: list[tuple[str, int, object]] = []
        self.inflight: Cut | None = None
        self.last_cut_at = clock()
        self.last_feedback_at = clock()
        self.feedback_highwater: int | None = None  # from the consumer's fetch responses, when known

    # -- events --------------------------------------------------------------------------------
    def add_rewrite(self, offset: int, event, now: float) -> str | None:
        """Join a served request; returns a dead-letter reason for a duplicate request id."""
        problems = self.add_rewrites([offset], [event], now)
        return problems[0][1] if problems else None

    def add_rewrites(self, offsets: Sequence[int], events: Sequence, now: float) -> list[tuple[int, str]]:
        """Join a batch of served requests in offset order; returns (index in the batch, dead-letter reason)
        of each duplicate request id."""
        if not events:
            return []
        ids = [event.request_id for event in events]
        unique = set(ids)
        if (
            self.forced
            or len(unique) != len(ids)
            or not self.open_requests.keys().isdisjoint(unique)
            or not self.closed.keys().isdisjoint(unique)
        ):
            return [
                (i, problem)
                for i, (offset, event) in enumerate(zip(offsets, events))
                if (problem := self._add_one_rewrite(offset, event, now)) is not None
            ]
        window = self._collecting(offsets[0], now)
        first = self.next_row
        self.next_row += len(events)
        window.served.extend(events)
        self.open_requests.update(zip(ids, range(first, self.next_row)))
        if self.pending:
            for request_id in unique.intersection(self.pending):
                self._join_pending(request_id, self.open_requests[request_id])
        latest = max([event.ts for event in events])
        window.last_offset = offsets[-1]
        window.max_ts = max(window.max_ts, latest)
        self.max_rewrite_ts = max(self.max_rewrite_ts, latest)
        self.rewrites_next = offsets[-1] + 1
        return []

    def _add_one_rewrite(self, offset: int, event, now: float) -> str | None:
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
        window = self._collecting(offset, now)
        row = self.next_row
        self.next_row += 1
        window.served.append(event)
        self.open_requests[event.request_id] = row
        if event.request_id in self.pending:
            self._join_pending(event.request_id, row)
        window.last_offset = offset
        window.max_ts = max(window.max_ts, event.ts)
        self.max_rewrite_ts = max(self.max_rewrite_ts, event.ts)
        return None

    def _collecting(self, offset: int, now: float) -> Window:
        """The window new requests go to (a new one if the last has stopped collecting)."""
        if not self.windows or self.windows[-1].sealed:
            self.windows.append(Window(first_offset=offset, opened_at=now, first_row=self.next_row))
        return self.windows[-1]

    def _join_pending(self, request_id: str, row: int) -> None:
        items = self._take_pending(request_id)
        self.joined_rows += [row] * len(items)
        self.joined_offsets += [offset for offset, _ in items]
        self.joined_events += [event for _, event in items]

    def add_feedback(self, offset: int, event) -> None:
        self.add_feedbacks([offset], [event])

    def add_feedbacks(self, offsets: Sequence[int], events: Sequence) -> None:
        """Join a batch of feedback events in offset order."""
        if not events:
            return
        if self.forced:
            for offset, event in zip(offsets, events):
                if offset >= self.forced["feedback_next"]:
                    self.deferred.append(("feedback", offset, event))
                else:
                    self.feedback_next = offset + 1
                    self.last_feedback_at = self.clock()
                    self._place_feedback([offset], [event])
            return
        self.feedback_next = offsets[-1] + 1
        self.last_feedback_at = self.clock()
        self._place_feedback(offsets, events)

    def feedback_ahead(self, rewrites_highwater: int | None) -> bool:
        """Whether the feedback partition should wait: it has run more than ``grace_s`` ahead of the requests
        in event time while requests remain to be read. In a catch-up the consumer would otherwise read
        feedback long before its requests, and expire it as unmatched."""
        if self.forced or rewrites_highwater is None or self.rewrites_next >= rewrites_highwater:
            return False
        return self.max_feedback_ts > self.max_rewrite_ts + self.config.grace_s

    def _place_feedback(self, offsets: Sequence[int], events: Sequence) -> None:
        """Each event to its open row, to the late events (its window is written) or to the pending ones."""
        self.max_feedback_ts = max(self.max_feedback_ts, max([event.ts for event in events]))
        row_of = self.open_requests.get
        rows = [row_of(event.request_id, -1) for event in events]
        if -1 not in rows:
            self.joined_rows += rows
            self.joined_offsets += offsets
            self.joined_events += events
            return
        for row, offset, event in zip(rows, offsets, events):
            if row >= 0:
                self.joined_rows.append(row)
                self.joined_offsets.append(offset)
                self.joined_events.append(event)
            elif event.request_id in self.closed:
                self.late.append((offset, event, "late"))
            else:
                self.pending[event.request_id].append((offset, event))
                latest = self.pending_latest.get(event.request_id, 0.0)
                self.pending_latest[event.request_id] = event.ts if event.ts > latest else latest

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
        spilled = list(spilled)
        if spilled:
            self._place_feedback([offset for offset, _ in spilled], [event for _, event in spilled])

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
        window = self.windows[0] if self.windows else Window(first_offset=-1, opened_at=0.0, first_row=self.next_row)
        if window.first_offset != forced["rewrites_first"] or window.last_offset != forced["rewrites_last"]:
            raise AggregatorError(
                f"cannot reproduce window {forced['key']}: re-read offsets {window.first_offset}-{window.last_offset}"
            )
        window.close_at = window.close_at or 0.0
        return self._make_cut(window, forced["feedback_next"])

    def _expire_unmatched(self, dry: bool = False) -> bool:
        horizon = self.max_feedback_ts - self.config.unmatched_after_s
        if dry:  # asked every loop turn while idle: one pass over floats, not over events
            return bool(self.pending_latest) and min(self.pending_latest.values()) < horizon
        expired = [rid for rid, latest in self.pending_latest.items() if latest < horizon]
        for rid in expired:
            self.late.extend((offset, event, "unmatched") for offset, event in self._take_pending(rid))
        return bool(expired)

    def _take_pending(self, request_id: str) -> list[tuple[int, FeedbackEvent]]:
        self.pending_latest.pop(request_id, None)
        return self.pending.pop(request_id, [])

    def _in_window(self, window: Window | None) -> np.ndarray:
        """Which entries of the joined-feedback log belong to ``window`` (the oldest open window: its rows
        are the lowest still open)."""
        rows = np.asarray(self.joined_rows, dtype=np.int64)
        return rows < window.end_row if window is not None else np.zeros(len(rows), dtype=bool)

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
        in_window = self._in_window(window)
        mine, others = in_window.tolist(), (~in_window).tolist()
        joined: list = []
        if window is not None:
            metadata = {
                "rewrites_first": window.first_offset,
                "rewrites_last": window.last_offset,
                "feedback_prev": self.committed[1],
                "feedback_next": feedback_next,
                "first_request_id": window.served[0].request_id,
            }
            key = object_key(
                config.windows_prefix, self.rewrites_topic, self.partition, window.first_offset, window.last_offset
            )
            joined = list(compress(self.joined_events, mine))
            rows = [row - window.first_row for row in compress(self.joined_rows, mine)]
            objects.append((key, encode_window(window.served, rows, joined, config, metadata)))
        if late:
            key = object_key(
                config.late_prefix, self.feedback_topic, self.partition, self.committed[1], feedback_next - 1
            )
            objects.append((key, encode_late(late)))
        held_offsets = list(compress(self.joined_offsets, others))
        held_events = list(compress(self.joined_events, others))
        for items in self.pending.values():
            held_offsets += [offset for offset, _ in items]
            held_events += [event for _, event in items]
        state_key = self.state_key(config, rewrites_next, feedback_next)
        objects.append((state_key, encode_spill(held_offsets, held_events)))
        return Cut(self.partition, window, rewrites_next, feedback_next, late, objects, joined)

    def state_key(self, config: FeedbackConfig, rewrites_next: int, feedback_next: int) -> str:
        return (
            f"{config.state_prefix}/group={self.group_id}/topic={self.rewrites_topic}/partition={self.partition}/"
            f"cut={rewrites_next}-{feedback_next}.parquet"
        )

    def cut_done(self, cut: Cut) -> None:
        """The cut is written and committed: forget what it made durable."""
        if cut.window is not None:
            self.windows.remove(cut.window)
            keep = (~self._in_window(cut.window)).tolist()
            self.joined_rows = list(compress(self.joined_rows, keep))
            self.joined_offsets = list(compress(self.joined_offsets, keep))
            self.joined_events = list(compress(self.joined_events, keep))
            ids = [event.request_id for event in cut.window.served]
            forget = self.open_requests.pop
            for request_id in ids:
                forget(request_id, None)
            self.closed.update(dict.fromkeys(ids))
            excess = len(self.closed) - RECENTLY_CLOSED_LIMIT
            if excess > 0:
                for request_id in list(islice(self.closed, excess)):
                    del self.closed[request_id]
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


# -- resuming: state from the objects of earlier cuts -----------------------------------------------
def written_but_uncommitted(refs: list[ObjectRef], rewrites_next: int, read: Callable[[str], bytes]) -> dict | None:
    """The cut a previous owner wrote but did not commit (the ``forced`` of a :class:`PartitionJoin`), if any.

    Windows are committed one at a time, so at most one object can lie beyond the committed offset."""
    beyond = [ref for ref in refs if ref.first_offset >= rewrites_next]
    if not beyond:
        return None
    ref = beyond[0]
    metadata = read_metadata(read(ref.key))
    return {
        "key": ref.key,
        "rewrites_first": ref.first_offset,
        "rewrites_last": ref.last_offset,
        "feedback_next": metadata["feedback_next"],
        "first_request_id": metadata["first_request_id"],
    }


def recently_closed(
    refs: list[ObjectRef], rewrites_next: int, read: Callable[[str], bytes], unmatched_after_s: float
) -> dict[str, None]:
    """Request ids of the latest committed windows, so that their feedback arriving after a restart is
    recognised as late at once (instead of waiting ``unmatched_after_s`` as unknown)."""
    closed: dict[str, None] = {}
    newest_ts = None
    for ref in reversed([r for r in refs if r.last_offset < rewrites_next]):
        table = pq.read_table(io.BytesIO(read(ref.key)), columns=["request_id", "ts"]).to_pydict()
        if not table["ts"]:
            continue
        newest_ts = newest_ts if newest_ts is not None else max(table["ts"])
        closed.update(dict.fromkeys(table["request_id"]))
        if len(closed) >= RECENTLY_CLOSED_LIMIT or max(table["ts"]) < newest_ts - unmatched_after_s:
            break
    return closed


def spilled_events(state: pd.DataFrame) -> list[tuple[int, FeedbackEvent]]:
    """The feedback events a state object holds (see :meth:`PartitionJoin.restore`)."""
    return [(int(o), FeedbackEvent.model_validate_json(j)) for o, j in zip(state["offset"], state["event_json"])]
