"""The feedback aggregator's consumer loop: reads served rewrites and feedback, writes cuts, commits.

A librdkafka consumer group (:mod:`minielm.feedback.consumer_group`) reads the rewrites and the feedback
topic; the range assignor gives one member partition p of both, and a
:class:`~minielm.feedback.join.PartitionJoin` joins them (see :mod:`minielm.feedback.join` for windows, late
events and the exactly-once replay). For each due cut the loop writes its objects to S3, flushes the dead
letters, and only then commits the offsets; a failed write is retried with backoff and never committed.
Each partition's batch is decoded with msgspec structs in one call (:mod:`minielm.feedback.decoding`) and
joined as a whole; invalid events go to the dead-letter topic with the reason the pydantic models give.

Query statistics go to Feast every ``push_interval_s``, independently of the windows (fresh within about a
second); per-partition totals written with each cut keep them exact at any replica count (``query_stats``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from minielm.config import Settings
from minielm.feedback.consumer_group import CommitRejected, GroupConsumer, Partition
from minielm.feedback.cut_store import CutStore
from minielm.feedback.dead_letter_producer import DeadLetterProducer
from minielm.feedback.decoding import decode_messages
from minielm.feedback.events import DeadLetter
from minielm.feedback.join import AggregatorError, Cut, PartitionJoin, recently_closed, written_but_uncommitted
from minielm.feedback.observability import AggregatorMetrics, AggregatorStats
from minielm.feedback.query_stats import FeastQueryStatsSink, QueryStatsPublisher, QueryStatsSink
from minielm.logs import get_logger
from minielm.storage import ObjectStore, permanent_s3_error

log = get_logger(__name__)


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
        self.consumer: GroupConsumer | None = None
        self.dead_letters: DeadLetterProducer | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def _connect(self) -> None:
        kafka = self.settings.kafka
        self.dead_letters = DeadLetterProducer(kafka, self.topics.dead_letter)
        self.consumer = GroupConsumer(
            kafka,
            self.group_id,
            [self.topics.rewrites, self.topics.feedback],
            on_assigned=self._assigned,
            on_revoked=self._revoked,
            overrides={"check.crcs": self.config.check_crcs, "reconnect.backoff.max.ms": 2000},
        )

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
                records = self.consumer.poll(self.config.poll_timeout_ms / 1000, self.config.max_poll_records)
                now = self.clock()
                for (topic, partition), batch in records.items():
                    self._handle_batch(topic, partition, batch, now)
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
            self.consumer.close()
            self.dead_letters.close()
        log.info("aggregator stopped", **{k: v for k, v in vars(self.stats).items() if k != "window_keys"})
        return self.stats

    def stop(self) -> None:
        self.stop_event.set()

    def _settled(self) -> bool:
        return bool(self.joins) and all(j.inflight is None and not j.forced for j in self.joins.values())

    # -- rebalance -----------------------------------------------------------------------------
    # librdkafka calls these inside poll, on the loop's thread; opening a partition reads S3.
    def _revoked(self, revoked: list[Partition]) -> None:
        for _, partition in revoked:
            if self.joins.pop(partition, None) is not None:
                log.info("partition revoked; its uncommitted work goes to the next owner", partition=partition)

    def _assigned(self, assigned: list[Partition]) -> dict[Partition, int]:
        """Open each assigned partition pair from its committed offsets; returns where each topic starts."""
        by_topic = defaultdict(set)
        for topic, partition in assigned:
            by_topic[topic].add(partition)
        rewrites, feedback = by_topic[self.topics.rewrites], by_topic[self.topics.feedback]
        if rewrites != feedback:
            raise AggregatorError(
                f"topics {self.topics.rewrites} and {self.topics.feedback} are not co-partitioned: "
                f"assigned partitions {sorted(rewrites)} vs {sorted(feedback)}; create both with "
                "kafka.partitions partitions"
            )
        starts = {}
        for partition in sorted(rewrites):
            join = self.joins[partition] = self._open_partition(partition)
            starts[self.topics.rewrites, partition] = join.rewrites_next
            starts[self.topics.feedback, partition] = join.feedback_next
        self._last_record_at = self.clock()
        return starts

    def _open_partition(self, partition: int) -> PartitionJoin:
        tp_r, tp_f = (self.topics.rewrites, partition), (self.topics.feedback, partition)
        committed = self.consumer.committed([tp_r, tp_f])
        committed_r, committed_f = committed[tp_r], committed[tp_f]
        rewrites_next = committed_r if committed_r is not None else self.consumer.beginning(*tp_r)
        feedback_next = committed_f if committed_f is not None else self.consumer.beginning(*tp_f)
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
        log.info(
            "partition assigned",
            partition=partition,
            rewrites_next=rewrites_next,
            feedback_next=feedback_next,
            reproducing=forced["key"] if forced else None,
        )
        return join

    # -- records -------------------------------------------------------------------------------
    def _handle_batch(self, topic: str, partition: int, messages, now: float) -> None:
        join = self.joins.get(partition)
        if join is None:
            return
        self._last_record_at = now
        is_rewrites = topic == self.topics.rewrites
        batch = decode_messages(messages, is_rewrites, topic, partition)
        valid = batch.events
        if is_rewrites:
            duplicates = join.add_rewrites(batch.offsets, valid, now)
            for index, problem in duplicates:
                message = batch.messages[index]
                letter = DeadLetter.rejected(topic, partition, message.offset(), message.value(), problem, "duplicate")
                self._dead_letter(letter, message.key())
            if duplicates:
                rejected = {index for index, _ in duplicates}
                valid = [event for index, event in enumerate(valid) if index not in rejected]
        else:
            join.add_feedbacks(batch.offsets, valid)
        for offset, key, letter in batch.dead_letters:
            self._dead_letter(letter, key)
            join.skip(is_rewrites, offset)
        self.stats.consumed += len(messages)
        if is_rewrites:
            self.stats.served += len(valid)
            self.publisher.served(partition, valid)
            kinds = {"served_rewrite": len(valid)}
        else:
            self.stats.feedback += len(valid)
            self.publisher.feedback(partition, valid)
            kinds = Counter([event.event_type for event in valid])
        self.metrics.events_counted(kinds)

    def _dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        self.stats.dead_letters += 1
        self.metrics.dead_letter(letter.error_kind)
        self.dead_letters.send(key, letter.to_bytes())
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
            join.feedback_highwater = self.consumer.highwater(self.topics.feedback, join.partition)
            self.metrics.report_lag(self.consumer, (self.topics.rewrites, self.topics.feedback), join.partition)
            self._pace(join)
            cut = join.inflight or join.next_cut(now)
            if cut is not None and now >= cut.retry_at:
                self._apply(join, cut, now)

    def _pace(self, join: PartitionJoin) -> None:
        """Hold or release the feedback partition as it runs ahead of its requests (``feedback_ahead``)."""
        if join.inflight is not None:  # a cut being retried holds both partitions itself
            return
        ahead = join.feedback_ahead(self.consumer.highwater(self.topics.rewrites, join.partition))
        if ahead != join.feedback_held:
            (self.consumer.pause if ahead else self.consumer.resume)([(self.topics.feedback, join.partition)])
            join.feedback_held = ahead

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
        tps = [(self.topics.rewrites, join.partition), (self.topics.feedback, join.partition)]
        try:
            if not cut.written:
                self.cuts.write(cut, self.publisher.cut_totals(cut))
                cut.written = True
            self.dead_letters.flush()
            self.consumer.commit({tps[0]: cut.rewrites_next, tps[1]: cut.feedback_next})
        except CommitRejected as error:
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
            self.consumer.pause(tps)
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
            self.consumer.resume(tps)
            join.feedback_held = False
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
            requests=len(cut.window.served) if cut.window else 0,
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
