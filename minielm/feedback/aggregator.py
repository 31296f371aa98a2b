"""The feedback aggregator's consumer loop: reads served rewrites and feedback, writes cuts, commits.

A kafka-python consumer group reads the rewrites and the feedback topic; the range assignor gives one
member partition p of both, and a :class:`~minielm.feedback.join.PartitionJoin` joins them (see
:mod:`minielm.feedback.join` for windows, late events and the exactly-once replay). For each due cut the
loop writes its objects to S3, flushes the dead letters, and only then commits the offsets; a failed write
is retried with backoff and never committed. Invalid events go to the dead-letter topic.

Query statistics go to Feast every ``push_interval_s``, independently of the windows (fresh within about a
second); per-partition totals written with each cut keep them exact at any replica count (``query_stats``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from minielm.config import Settings
from minielm.feedback.cut_store import CutStore
from minielm.feedback.events import DeadLetter, parse_event
from minielm.feedback.join import AggregatorError, Cut, PartitionJoin, recently_closed, written_but_uncommitted
from minielm.feedback.observability import AggregatorMetrics, AggregatorStats
from minielm.feedback.query_stats import FeastQueryStatsSink, QueryStatsPublisher, QueryStatsSink
from minielm.kafka_io import make_consumer, make_producer
from minielm.logs import get_logger
from minielm.storage import ObjectStore, permanent_s3_error

log = get_logger(__name__)


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
        metrics: AggregatorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or AggregatorMetrics()
        self.config = settings.feedback
        self.topics = settings.kafka.topics
        self.group_id = group_id or settings.kafka.consumer_group
        self.stop_event = threading.Event()
        s3 = store or ObjectStore(settings.s3)
        self.cuts = CutStore(s3, self.config, self.stop_event, self.group_id, self.topics.rewrites)
        sink = FeastQueryStatsSink(settings) if sink is None and self.config.push_to_feast else sink
        self.clock = clock
        self.joins: dict[int, PartitionJoin] = {}
        self.stats = AggregatorStats()
        self.publisher = QueryStatsPublisher.for_config(sink, self.cuts, self.config, clock)
        self._last_record_at = clock()
        self.consumer = self.producer = self._assignment = None

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
                self.metrics.loop_turned(len(self.joins))
                if on_progress is not None:
                    on_progress(self.stats)
                if until_idle_s is not None and now - self._last_record_at >= until_idle_s and self._settled():
                    break
                if max_seconds is not None and now - started >= max_seconds:
                    break
            self._drain()
            self._push(self.clock(), final=True)
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
        refs = self.cuts.window_refs(self.topics.rewrites, partition)
        forced = written_but_uncommitted(refs, rewrites_next, self.cuts.read_object)
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
        join.closed.update(recently_closed(refs, rewrites_next, self.cuts.read_object, self.config.unmatched_after_s))
        spilled, totals = [], None
        if committed_r is not None or committed_f is not None:
            spilled = self.cuts.read_state(join.state_key(self.config, rewrites_next, feedback_next))
            totals = self.cuts.committed_totals(partition, rewrites_next, feedback_next)
            join.restore(spilled)
        self.publisher.opened(partition, totals, [event for _, event in spilled])
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
                reason = f"event_type {event.event_type!r} on topic {tp.topic}, which carries {expected}"
                event = DeadLetter.rejected(tp.topic, tp.partition, record.offset, record.value, reason, "wrong_topic")
            if isinstance(event, DeadLetter):
                self._dead_letter(event, record.key)
                join.skip(is_rewrites, record.offset)
                continue
            if is_rewrites:
                problem = join.add_rewrite(record.offset, event, now)
                if problem:
                    letter = DeadLetter.rejected(
                        tp.topic, tp.partition, record.offset, record.value, problem, "duplicate"
                    )
                    self._dead_letter(letter, record.key)
                    continue
                stats.served += 1
                self.publisher.served(tp.partition, event)
            else:
                join.add_feedback(record.offset, event)
                stats.feedback += 1
                self.publisher.feedback(tp.partition, event)
            self.metrics.event(event.event_type)

    def _dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        self.stats.dead_letters += 1
        self.metrics.dead_letter(letter.error_kind)
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
            self.metrics.report_lag(self.consumer, (self.topics.rewrites, self.topics.feedback), join.partition)
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
                self.cuts.write(cut, self.publisher.cut_totals(cut))
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
            permanent = None if cut.written else permanent_s3_error(error)
            if permanent is not None:
                self.metrics.s3_failure(permanent.split(":", 1)[0])
                raise AggregatorError(
                    f"S3 refused the window write to s3://{self.cuts.store.bucket}/{cut.objects[0][0]} "
                    f"({permanent}); retrying cannot fix this: check the s3.* settings, the credentials and "
                    "the bucket policy. Offsets stay uncommitted, so nothing is lost."
                ) from error
            self.metrics.s3_retry()
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
        self.publisher.cut_committed(cut)
        self.stats.commits += 1
        self.metrics.committed()
        if cut.window is not None:
            self.stats.windows_written += 1
            self.metrics.window_written()
            self.stats.window_keys.append(cut.objects[0][0])
        if cut.late:
            self.stats.late_written += len(cut.late)
        self.cuts.delete_old_state(cut)
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

    def _push(self, now: float, final: bool = False) -> None:
        self.publisher.keep_owned(self.joins)
        if final:
            self.publisher.final_push()
        else:
            self.publisher.push_due(now)
        self.stats.pushes, self.stats.push_failures = self.publisher.pushes, self.publisher.failures
