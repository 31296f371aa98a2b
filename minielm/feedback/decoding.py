"""The aggregator's event decoding: msgspec structs on the hot path, the pydantic models for everything else.

:class:`ServedRecord` and :class:`FeedbackRecord` carry the fields of
:class:`~minielm.feedback.events.ServedRewrite` and :class:`~minielm.feedback.events.FeedbackEvent`
with the same limits and strict types, and decode a message in about a tenth of the time. They accept
no more than the models do (a test feeds both the same bad corpus): a value they reject goes through
:func:`~minielm.feedback.events.parse_event`, whose verdict stands, so the dead-letter reasons are the
models' and an event the structs are stricter about than the models is still accepted. The structs hold only
text and numbers (no reference cycles), so the garbage collector does not track them (``gc=False``).

A consumed batch is decoded in one call (:func:`decode_messages`): the values joined by newlines and read
as JSON lines. Only a batch in which some value is not exactly one valid event goes message by message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from minielm.feedback.events import (
    MAX_EVENT_BYTES,
    MAX_PRODUCTS,
    MAX_TEXT_CHARS,
    DeadLetter,
    FeedbackEvent,
    FeedbackType,
    ServedRewrite,
    parse_event,
)

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
EpochSeconds = Annotated[float, msgspec.Meta(gt=0)]  # JSON has no NaN, and msgspec rejects 1e400


class ServedRecord(msgspec.Struct, frozen=True, gc=False):
    """A served rewrite as the aggregator holds it."""

    schema_version: Literal[1]
    event_type: Literal["served_rewrite"]
    request_id: RequestId
    query: Text
    ts: EpochSeconds
    rewrite: Text
    model_name: Name
    model_version: Name
    product_ids: Annotated[list[Name], msgspec.Meta(max_length=MAX_PRODUCTS)] = []
    exploration: bool = False
    exploration_rank: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRODUCTS)] | None = None
    greedy_rewrite: Text | None = None


class FeedbackRecord(msgspec.Struct, frozen=True, gc=False):
    """A feedback event as the aggregator holds it."""

    schema_version: Literal[1]
    event_type: FeedbackType
    request_id: RequestId
    query: Text
    ts: EpochSeconds
    product_id: Name | None = None
    position: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRODUCTS)] | None = None
    reformulated_query: Text | None = None


Record = ServedRecord | FeedbackRecord
_DECODERS = {True: msgspec.json.Decoder(ServedRecord), False: msgspec.json.Decoder(FeedbackRecord)}


def decode_event(
    raw: bytes | None, rewrites_topic: bool, topic: str, partition: int, offset: int
) -> Record | ServedRewrite | FeedbackEvent | DeadLetter:
    """The event in one message of the rewrites (``rewrites_topic``) or the feedback topic, or its dead letter.

    A valid event of the other topic's type is returned as such; the caller dead-letters it as misplaced."""
    if raw is not None and len(raw) <= MAX_EVENT_BYTES:
        try:
            record = _DECODERS[rewrites_topic].decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError included; bad UTF-8 in a string
            pass
        else:
            if rewrites_topic or (record.product_id is None) == (record.event_type == "reformulation"):
                return record
    event = parse_event(raw, topic=topic, partition=partition, offset=offset)
    return event if isinstance(event, DeadLetter) else as_record(event)


def as_record(event: ServedRewrite | FeedbackEvent) -> Record | ServedRewrite | FeedbackEvent:
    """The struct of a model-validated event (the model itself in the unlikely case the struct is stricter)."""
    kind = ServedRecord if isinstance(event, ServedRewrite) else FeedbackRecord
    try:
        return msgspec.convert(event.model_dump(), kind)
    except msgspec.ValidationError:
        return event


def event_json(event: Record | ServedRewrite | FeedbackEvent) -> str:
    """The event's JSON wire form (what ``FeedbackEvent.model_validate_json`` reads back)."""
    if isinstance(event, msgspec.Struct):
        return msgspec.json.encode(event).decode("utf-8")
    return event.model_dump_json()


@dataclass
class DecodedBatch:
    """One partition's consumed messages: the valid events (with their messages, in offset order) and the
    dead letters (with their message keys)."""

    offsets: list[int] = field(default_factory=list)
    events: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    dead_letters: list[tuple[int, bytes | None, DeadLetter]] = field(default_factory=list)


def decode_messages(messages: list[Any], rewrites_topic: bool, topic: str, partition: int) -> DecodedBatch:
    """Decode a batch of Kafka messages (objects with ``offset()``, ``value()`` and ``key()``) of one topic."""
    offsets = [m.offset() for m in messages]
    values = [m.value() for m in messages]
    events = decode_batch(values, rewrites_topic)
    if events is not None:
        return DecodedBatch(offsets, events, messages)
    batch = DecodedBatch()
    for offset, value, message in zip(offsets, values, messages):
        event = decode_event(value, rewrites_topic, topic, partition, offset)
        if type(event) is not DeadLetter and rewrites_topic != (event.event_type == "served_rewrite"):
            expected = "served_rewrite" if rewrites_topic else "a feedback event"
            reason = f"event_type {event.event_type!r} on topic {topic}, which carries {expected}"
            event = DeadLetter.rejected(topic, partition, offset, value, reason, "wrong_topic")
        if type(event) is DeadLetter:
            batch.dead_letters.append((offset, message.key(), event))
        else:
            batch.offsets.append(offset)
            batch.events.append(event)
            batch.messages.append(message)
    return batch


def decode_batch(values: list[bytes | None], rewrites_topic: bool) -> list[Record] | None:
    """Every value decoded as one event of the topic's type in a single msgspec call, or None if any value
    needs :func:`decode_event` to decide (invalid, too large, blank, or holding a newline, which would
    make the lines and the values disagree)."""
    if not values or None in values or max(map(len, values)) > MAX_EVENT_BYTES or not all(map(bytes.strip, values)):
        return None
    lines = b"\n".join(values)
    if lines.count(b"\n") != len(values) - 1:
        return None
    try:
        records = _DECODERS[rewrites_topic].decode_lines(lines)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if len(records) != len(values):  # cannot happen without blank lines; never trust alignment blindly
        return None
    if not rewrites_topic and not all((r.product_id is None) == (r.event_type == "reformulation") for r in records):
        return None
    return records
