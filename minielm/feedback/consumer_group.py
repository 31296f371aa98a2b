"""The aggregator's membership of its consumer group, on librdkafka (confluent-kafka), in the loop's own terms.

- Assignment: the range assignor gives a member partition p of both topics. librdkafka announces an
  assignment inside :meth:`GroupConsumer.poll`; the callback asks ``on_assigned`` where each partition
  starts (the aggregator reads its committed offsets and its S3 state) and assigns at exactly those
  offsets, so no record fetched for an earlier owner is delivered. What ``on_assigned`` raises is raised
  again from ``poll``.
- Commits are synchronous; one the group refused because it rebalanced raises :class:`CommitRejected`.
- High watermarks come from the fetch responses: the broker's ListOffsets answer is wrong on the embedded
  Tansu after batched produce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from minielm.config import KafkaConfig
from minielm.errors import ServiceError
from minielm.kafka_io import make_rdkafka_consumer
from minielm.logs import get_logger

log = get_logger(__name__)

Partition = tuple[str, int]  # (topic, partition)
# The group has moved on: another member owns the partition now (or will, after the rebalance).
_REBALANCED = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_MEMBER_EPOCH,
    KafkaError.STALE_MEMBER_EPOCH,
    KafkaError._ASSIGNMENT_LOST,
}


class CommitRejected(ServiceError):
    """The group rebalanced: the offsets were not committed and the partition's next owner replays them."""


def _offset(value: int) -> int | None:
    return value if value >= 0 else None  # librdkafka's OFFSET_INVALID (-1001) and friends: unknown


class GroupConsumer:
    """A manual-commit member of ``group_id`` reading ``topics``; see the module docstring."""

    def __init__(
        self,
        config: KafkaConfig,
        group_id: str,
        topics: Iterable[str],
        on_assigned: Callable[[list[Partition]], Mapping[Partition, int]],
        on_revoked: Callable[[list[Partition]], None],
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.timeout_s = config.request_timeout_ms / 1000
        self.on_assigned, self.on_revoked = on_assigned, on_revoked
        self._callback_error: BaseException | None = None
        self.consumer = make_rdkafka_consumer(config, group_id, overrides)
        self.consumer.subscribe(list(topics), on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)

    def _assign(self, consumer, partitions: list[TopicPartition]) -> None:
        try:
            starts = self.on_assigned([(tp.topic, tp.partition) for tp in partitions])
        except BaseException as error:  # raised again from poll, in the loop's thread
            self._callback_error = error
            return
        consumer.assign([TopicPartition(tp.topic, tp.partition, starts[tp.topic, tp.partition]) for tp in partitions])

    def _revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        try:
            self.on_revoked([(tp.topic, tp.partition) for tp in partitions])
        except BaseException as error:
            self._callback_error = error

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Message]]:
        """Up to ``max_records`` records, by partition in offset order."""
        messages = self.consumer.consume(max_records, timeout_s)
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if not messages:
            return {}
        if any([message.error() is not None for message in messages]):
            messages = self._without_errors(messages)
        # A fetch delivers runs of one partition: group by runs, not message by message.
        keys = list(zip([m.topic() for m in messages], [m.partition() for m in messages]))
        starts = [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]]
        batches: dict[Partition, list[Message]] = {}
        for start, end in zip([0, *starts], [*starts, len(keys)]):
            batches.setdefault(keys[start], []).extend(messages[start:end])
        return batches

    @staticmethod
    def _without_errors(messages: list[Message]) -> list[Message]:
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("kafka consumer error; librdkafka retries", error=str(error))
        return kept

    def committed(self, partitions: list[Partition]) -> dict[Partition, int | None]:
        answer = self.consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=self.timeout_s)
        return {(tp.topic, tp.partition): _offset(tp.offset) for tp in answer}

    def beginning(self, topic: str, partition: int) -> int:
        low, _ = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout_s)
        return max(low, 0)

    def highwater(self, topic: str, partition: int) -> int | None:
        """The partition's end as of the last fetch response; None before the first."""
        _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        return _offset(high)

    def position(self, topic: str, partition: int) -> int | None:
        """The offset of the next record this member delivers; None if it does not know yet."""
        return _offset(self.consumer.position([TopicPartition(topic, partition)])[0].offset)

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offsets to read; :class:`CommitRejected` if the group has rebalanced."""
        wanted = [TopicPartition(t, p, offset) for (t, p), offset in offsets.items()]
        try:
            answer = self.consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as error:
            if error.args and error.args[0].code() in _REBALANCED:
                raise CommitRejected(str(error)) from error
            raise
        for tp in answer or ():
            if tp.error is not None:
                if tp.error.code() in _REBALANCED:
                    raise CommitRejected(f"{tp.topic}[{tp.partition}]: {tp.error}")
                raise KafkaException(tp.error)

    def pause(self, partitions: list[Partition]) -> None:
        self.consumer.pause([TopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: list[Partition]) -> None:
        self.consumer.resume([TopicPartition(t, p) for t, p in partitions])

    def close(self) -> None:
        """Leave the group without committing anything."""
        self.consumer.close()
