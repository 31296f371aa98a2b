"""The aggregator's event decoding: msgspec structs on the hot path, the pydantic models for everything else.

:class:`ServedRecord` and :class:`FeedbackRecord` carry the fields of
:class:`~minielm.feedback.events.ServedRewrite` and :class:`~minielm.feedback.events.FeedbackEvent`
with the same limits and strict types, and decode a message in about a tenth of the time. They accept
no more than the models do (a test feeds both the same bad corpus): a value they reject goes through
:func:`~minielm.feedback.events.parse_event`, whose verdict stands, so the dead-letter reasons are the
models' and an event the structs are stricter about than the models is still accepted. The structs hold only
text and numbers (no reference cycles), so the garbage collector does not track them (``gc=False``).
"""

from __future__ import annotations

from typing import Annotated, Literal

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
