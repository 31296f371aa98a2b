"""Inspect and re-inject the dead-letter topic (``minielm feedback dlq show|replay``).

``show`` reads the topic from the beginning without committing anything. ``replay`` reads what its
own consumer group (``<kafka.consumer_group>.dlq-replay``) has not replayed yet, validates each
original event again, sends the ones that now pass back to the topic their type belongs on (keyed by
request id, as producers do), and appends the ones that fail again to the end of the dead-letter
topic with the new reason. Only after every send is flushed does it commit, so a crash replays again
(at-least-once; the aggregator dead-letters a duplicate request id) and nothing is ever lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import TopicPartition

from minielm.config import Settings
from minielm.feedback.events import DeadLetter, ServedRewrite, message_key, parse_event
from minielm.kafka_io import make_consumer, make_producer
from minielm.logs import get_logger

log = get_logger(__name__)


@dataclass
class StoredLetter:
    partition: int
    offset: int
    letter: DeadLetter

    def as_dict(self) -> dict:
        original = self.letter.original
        return {
            "partition": self.partition,
            "offset": self.offset,
            "kind": self.letter.error_kind,
            "reason": self.letter.reason,
            "source": f"{self.letter.source_topic}[{self.letter.source_partition}]@{self.letter.source_offset}",
            "ts": self.letter.ts,
            "original": original[:500].decode("utf-8", "replace"),
            "original_size": len(original),
        }


@dataclass
class ReplayResult:
    read: int = 0
    replayed: dict[str, int] = field(default_factory=dict)
    failed_again: list[DeadLetter] = field(default_factory=list)
    unreadable: int = 0


def replay_group(settings: Settings) -> str:
    return f"{settings.kafka.consumer_group}.dlq-replay"


def _read(consumer, topic: str, limit: int | None, idle_s: float) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) from the consumer's positions until ``idle_s`` without records or ``limit``."""
    records: list[tuple[int, int, bytes]] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_s and (limit is None or len(records) < limit):
        batch = consumer.poll(timeout_ms=200, max_records=500)
        for tp, messages in batch.items():
            for message in messages:
                if limit is not None and len(records) >= limit:
                    break
                records.append((tp.partition, message.offset, message.value))
        if batch:
            idle_since = time.monotonic()
    return records


def _assign(consumer, topic: str, from_beginning: bool) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ValueError(
            f"kafka.topics.dead_letter: topic {topic!r} does not exist on {consumer.config['bootstrap_servers']}"
        )
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    for tp in tps:
        committed = None if from_beginning else consumer.committed(tp)
        if committed is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    return tps


def show_dead_letters(settings: Settings, limit: int | None = 100, idle_s: float = 2.0) -> list[StoredLetter]:
    """The dead letters on the topic, oldest first; commits nothing."""
    topic = settings.kafka.topics.dead_letter
    consumer = make_consumer(settings.kafka, group_id=None)
    try:
        _assign(consumer, topic, from_beginning=True)
        rows = _read(consumer, topic, limit, idle_s)
    finally:
        consumer.close()
    return [StoredLetter(p, o, DeadLetter.from_bytes(v)) for p, o, v in rows]


def replay_dead_letters(
    settings: Settings, limit: int | None = None, dry_run: bool = False, idle_s: float = 2.0
) -> ReplayResult:
    """Validate each not-yet-replayed dead letter again; re-inject the good, re-append the bad, then commit."""
    topics = settings.kafka.topics
    consumer = make_consumer(settings.kafka, group_id=replay_group(settings))
    producer = None if dry_run else make_producer(settings.kafka)
    result = ReplayResult()
    try:
        tps = _assign(consumer, topics.dead_letter, from_beginning=False)
        rows = _read(consumer, topics.dead_letter, limit, idle_s)
        next_offsets: dict[int, int] = {}
        for partition, offset, value in rows:
            result.read += 1
            next_offsets[partition] = offset + 1
            try:
                letter = DeadLetter.from_bytes(value)
            except (ValueError, KeyError, TypeError) as error:  # not written by us: keep it where it is
                result.unreadable += 1
                log.warning(
                    "unreadable dead letter left in place", partition=partition, offset=offset, error=str(error)
                )
                continue
            event = parse_event(letter.original, topic=letter.source_topic)
            if isinstance(event, DeadLetter):
                again = event.model_copy(
                    update={
                        "reason": f"replay failed again: {event.reason}",
                        "source_topic": letter.source_topic,
                        "source_partition": letter.source_partition,
                        "source_offset": letter.source_offset,
                    }
                )
                result.failed_again.append(again)
                if producer is not None:
                    producer.send(topics.dead_letter, value=again.to_bytes())
                continue
            target = topics.rewrites if isinstance(event, ServedRewrite) else topics.feedback
            result.replayed[target] = result.replayed.get(target, 0) + 1
            if producer is not None:
                producer.send(target, key=message_key(event), value=letter.original)
        if producer is not None:
            producer.flush(timeout=settings.kafka.request_timeout_ms / 1000)
            from kafka.structs import OffsetAndMetadata

            commits = {
                tp: OffsetAndMetadata(next_offsets[tp.partition], "", -1) for tp in tps if tp.partition in next_offsets
            }
            if commits:
                consumer.commit(commits)
    finally:
        consumer.close(autocommit=False)
        if producer is not None:
            producer.close()
    log.info(
        "dead letters replayed",
        read=result.read,
        replayed=result.replayed,
        failed_again=len(result.failed_again),
        dry_run=dry_run,
    )
    return result
