"""Per-query statistics without servers: the feature rates, and the committed totals that make the Feast
values of two members, and of a member restarted mid-stream, equal to those of one member."""

from __future__ import annotations

import io
import threading

import pandas as pd
import pytest

from minielm.config import FeedbackConfig
from minielm.feedback.cut_store import CutStore
from minielm.feedback.events import FeedbackEvent, ServedRewrite
from minielm.feedback.join import PartitionJoin
from minielm.feedback.query_stats import QueryStatsPublisher

CONFIG = FeedbackConfig(window_s=1.0, grace_s=0.5, unmatched_after_s=10.0)
KINDS = ("impression", "click", "add_to_cart", "purchase", "reformulation")


class MemoryObjectStore:
    """The four ObjectStore calls a CutStore makes, in memory."""

    bucket = "test"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key, data, content_type=""):
        self.objects[key] = data

    def put_parquet(self, key, frame):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.objects[key] = buffer.getvalue()

    def get_parquet(self, key):
        from minielm.storage import ObjectNotFound

        if key not in self.objects:
            raise ObjectNotFound(key)
        return pd.read_parquet(io.BytesIO(self.objects[key]))

    def list_keys(self, prefix=""):
        return sorted(k for k in list(self.objects) if k.startswith(prefix))

    def delete(self, key):
        self.objects.pop(key, None)


class OnlineStore:
    """Feast's online store as the members see it: the last push of a key wins."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def push(self, frame: pd.DataFrame) -> None:
        for row in frame.drop(columns="event_timestamp").to_dict("records"):
            self.rows[row["query_key"]] = row


def served(i: int) -> ServedRewrite:
    return ServedRewrite(
        request_id=f"r{i}",
        query=f"query {i % 7}",
        rewrite="w",
        model_name="m",
        model_version="1",
        product_ids=[] if i % 5 == 0 else ["p1"],
        ts=100.0 + i,
    )


def feedback(i: int) -> list[FeedbackEvent]:
    kinds = [KINDS[(i + k) % len(KINDS)] for k in range(i % 4)]
    return [
        FeedbackEvent(
            event_type=kind,
            request_id=f"r{i}",
            query=f"query {i % 7}",
            product_id=None if kind == "reformulation" else "p1",
            position=None if kind == "reformulation" else 0,
            ts=100.5 + i,
        )
        for kind in kinds
    ]


def partition_log(partition: int, requests: int = 60) -> list[tuple[str, int, object]]:
    """The records of one partition pair in consumption order: (topic, offset, event)."""
    records, rewrites, feedbacks = [], 0, 0
    for i in range(partition, requests * 2, 2):
        records.append(("rewrites", rewrites, served(i)))
        rewrites += 1
        for event in feedback(i):
            records.append(("feedback", feedbacks, event))
            feedbacks += 1
    return records


class Member:
    """One aggregator member's query-statistics hooks around real joins and a real CutStore."""

    def __init__(self, store: MemoryObjectStore, online: OnlineStore) -> None:
        self.cuts = CutStore(store, CONFIG, threading.Event(), "g", "rw")
        self.publisher = QueryStatsPublisher(
            online, self.cuts, interval_s=0.5, backoff_s=0.0, poll_s=0.5, clock=lambda: 0.0
        )
        self.joins: dict[int, PartitionJoin] = {}

    def open(self, partition: int) -> None:
        committed = self.cuts.latest_totals_keys().get(partition)
        rewrites_next, feedback_next, spilled, totals = 0, 0, [], None
        if committed is not None:
            rewrites_next, feedback_next = map(int, committed.rsplit("cut=", 1)[1][: -len(".parquet")].split("-"))
            join = PartitionJoin(partition, "rw", "fb", rewrites_next, feedback_next, CONFIG, group_id="g")
            spilled = self.cuts.read_state(join.state_key(CONFIG, rewrites_next, feedback_next))
            totals = self.cuts.committed_totals(partition, rewrites_next, feedback_next)
        join = PartitionJoin(partition, "rw", "fb", rewrites_next, feedback_next, CONFIG, group_id="g")
        join.restore(spilled)
        self.publisher.opened(partition, totals, [event for _, event in spilled])
        self.joins[partition] = join
        self.publisher.keep_owned(self.joins)

    def consume(self, partition: int, records) -> None:
        join = self.joins[partition]
        for topic, offset, event in records:
            if topic == "rewrites" and offset >= join.committed[0]:
                join.seal_due(offset * 0.25)  # a window every 4 requests
                join.add_rewrite(offset, event, offset * 0.25)
                self.publisher.served(partition, [event])
            elif topic == "feedback" and offset >= join.committed[1]:
                join.add_feedback(offset, event)
                self.publisher.feedback(partition, [event])

    def cut_all(self, partition: int, limit: int | None = None) -> None:
        join = self.joins[partition]
        for _ in range(limit or 1_000):
            if (cut := join.drain_cuts()) is None:
                break
            self.cuts.write(cut, self.publisher.cut_totals(cut))
            join.cut_done(cut)
            self.publisher.cut_committed(cut)
            self.cuts.delete_old_state(cut)


def single_member_values() -> dict[str, dict]:
    online = OnlineStore()
    member = Member(MemoryObjectStore(), online)
    for partition in (0, 1):
        member.open(partition)
        member.consume(partition, partition_log(partition))
        member.cut_all(partition)
    member.publisher.final_push()
    return online.rows


def test_rates_of_one_member_count_every_event_once():
    rows = single_member_values()
    expected_volume = {f"query {q}": sum(1 for i in range(120) if i % 7 == q) for q in range(7)}
    assert sorted(row["volume"] for row in rows.values()) == sorted(expected_volume.values())
    total_zero = sum(row["zero_result_rate"] * row["volume"] for row in rows.values())
    assert total_zero == pytest.approx(sum(1 for i in range(120) if i % 5 == 0))
    reformulations = sum(row["reformulation_rate"] * row["volume"] for row in rows.values())
    assert reformulations == pytest.approx(
        sum(e.event_type == "reformulation" for i in range(120) for e in feedback(i))
    )


def test_two_members_give_the_values_of_one_even_when_a_stale_push_lands_last():
    store, online = MemoryObjectStore(), OnlineStore()
    a, b = Member(store, online), Member(store, online)
    a.open(0)
    b.open(1)
    a.consume(0, partition_log(0))
    b.consume(1, partition_log(1))
    a.cut_all(0)
    a.publisher.push_due(1.0)  # a has not seen partition 1's totals: a push without them
    stale, expected = dict(online.rows), single_member_values()
    assert stale and all(row["volume"] < expected[key]["volume"] for key, row in stale.items())
    b.cut_all(1)
    b.publisher.final_push()
    online.rows.update(stale)  # a's partial push arrives after b's complete one
    a.publisher.final_push()  # a reads partition 1's totals and pushes what changed
    assert online.rows == expected


def test_a_member_restarted_mid_stream_neither_loses_nor_double_counts():
    store, online = MemoryObjectStore(), OnlineStore()
    first = Member(store, online)
    first.open(0)
    records = partition_log(0)
    first.consume(0, records[: len(records) // 3])
    first.cut_all(0, limit=2)  # later windows stay open: their feedback goes to the state object
    assert first.joins[0].windows
    first.consume(0, records[len(records) // 3 : 2 * len(records) // 3])  # consumed, never committed
    first.publisher.push_due(1.0)  # fresh values include the uncommitted counts
    assert online.rows
    replacement = Member(store, online)  # the first dies; its uncommitted events are read again
    replacement.open(0)
    replacement.consume(0, records)
    replacement.cut_all(0)
    other = Member(store, online)
    other.open(1)
    other.consume(1, partition_log(1))
    other.cut_all(1)
    other.publisher.final_push()
    replacement.publisher.final_push()
    assert online.rows == single_member_values()


def test_uncommitted_counts_are_dropped_with_a_revoked_partition():
    store, online = MemoryObjectStore(), OnlineStore()
    member = Member(store, online)
    member.open(0)
    member.consume(0, partition_log(0)[:10])
    assert member.publisher.value(member.publisher.key("query 0")).volume == 1
    member.joins.clear()
    member.publisher.keep_owned(member.joins)
    assert member.publisher.value(member.publisher.key("query 0")).volume == 0
    assert member.publisher.dirty


def test_feature_rates_and_shared_keys():
    online = OnlineStore()
    member = Member(MemoryObjectStore(), online)
    member.open(0)
    events = [served(0), served(1).model_copy(update={"query": "QUERY 0"})]
    for event in events:
        member.publisher.served(0, [event])
    for kind in ("impression", "impression", "click", "add_to_cart", "reformulation"):
        member.publisher.feedback(0, [feedback(3)[0].model_copy(update={"event_type": kind, "query": "query 0"})])
    member.publisher.push_due(1.0)
    (row,) = online.rows.values()  # "query 0" and "QUERY 0" share a key
    assert row["volume"] == 2 and row["ctr"] == pytest.approx(0.5) and row["add_to_cart_rate"] == pytest.approx(0.5)
    assert row["zero_result_rate"] == pytest.approx(0.5) and row["reformulation_rate"] == pytest.approx(0.5)
