"""Versioned JSON schemas of the events on the Kafka topics, and their safe parsing.

Serving logs one :class:`ServedRewrite` per request on ``settings.kafka.topics.rewrites``; shoppers
(real or simulated) produce :class:`FeedbackEvent` records on ``settings.kafka.topics.feedback``.
:func:`parse_event` never raises on bad input: it returns either a valid event or a
:class:`DeadLetter` that names the reason and keeps the original bytes, so the consumer can send it to
the dead-letter topic and carry on. Nothing is dropped silently.
"""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (SCHEMA_VERSION,)
# Anything larger is not a shopper event; it goes to the dead-letter topic without being parsed.
MAX_EVENT_BYTES = 64 * 1024
MAX_TEXT_CHARS = 1024
MAX_PRODUCTS = 1000

FEEDBACK_TYPES = ("impression", "click", "add_to_cart", "purchase", "reformulation")
FeedbackType = Literal["impression", "click", "add_to_cart", "purchase", "reformulation"]

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
RequestId = Annotated[str, Field(min_length=1, max_length=128)]


class _Event(BaseModel):
    # strict: a position sent as "3" or a timestamp sent as "now" is a producer bug, not a value to coerce.
    # Unknown extra fields are ignored so that producers may add fields without a version bump.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: RequestId
    query: Text
    ts: float

    @field_validator("ts")
    @classmethod
    def _epoch_seconds(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError("expected positive, finite epoch seconds")
        return value

    def to_bytes(self) -> bytes:
        """Compact JSON, the wire format on the topics."""
        return self.model_dump_json().encode("utf-8")


class ServedRewrite(_Event):
    """One served request: the query, the rewrite the model made and the products the search returned.

    A request in the exploration bucket (``serving.exploration_share``) was served a non-greedy candidate:
    ``exploration`` is true, ``exploration_rank`` is that candidate's 0-based rank among the model's beam
    rewrites and ``greedy_rewrite`` what the greedy policy would have served."""

    event_type: Literal["served_rewrite"] = "served_rewrite"
    rewrite: Text
    model_name: Annotated[str, Field(min_length=1, max_length=256)]
    model_version: Annotated[str, Field(min_length=1, max_length=256)]
    product_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=MAX_PRODUCTS)
    ] = []
    exploration: bool = False
    exploration_rank: Annotated[int, Field(ge=0, le=MAX_PRODUCTS)] | None = None
    greedy_rewrite: Text | None = None


class FeedbackEvent(_Event):
    """What a shopper did with a served result list.

    ``product_id`` and ``position`` (0-based rank in the served list) are required for product events
    and null for a reformulation, which instead may carry the query the shopper typed next.
    """

    event_type: FeedbackType
    product_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    position: Annotated[int, Field(ge=0, le=MAX_PRODUCTS)] | None = None
    reformulated_query: Text | None = None

    @model_validator(mode="after")
    def _product_fields_match_type(self) -> FeedbackEvent:
        if self.event_type == "reformulation":
            if self.product_id is not None:
                raise ValueError("product_id must be null for a reformulation")
        elif self.product_id is None:
            raise ValueError(f"product_id is required for event_type {self.event_type!r}")
        return self


Event = Annotated[ServedRewrite | FeedbackEvent, Field(discriminator="event_type")]
_EVENT_ADAPTER: TypeAdapter[ServedRewrite | FeedbackEvent] = TypeAdapter(Event)


class DeadLetter(BaseModel):
    """An event that failed validation: why, where it came from, and its exact original bytes."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    reason: str
    error_kind: Literal[
        "too_large", "invalid_json", "not_an_object", "unknown_version", "invalid_fields", "wrong_topic", "duplicate"
    ]
    original: bytes
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    ts: float = Field(default_factory=time.time)

    @classmethod
    def rejected(cls, topic: str, partition: int, offset: int, original: bytes, reason: str, kind: str) -> DeadLetter:
        """A well-formed event that still cannot be used (on the wrong topic, a duplicate request id)."""
        return cls(
            reason=reason,
            error_kind=kind,
            original=original,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
        )

    def to_bytes(self) -> bytes:
        """JSON for the dead-letter topic; the original bytes travel base64-encoded."""
        record = self.model_dump(exclude={"original"})
        record["original_b64"] = base64.b64encode(self.original).decode("ascii")
        record["original_size"] = len(self.original)
        return json.dumps(record).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> DeadLetter:
        record = json.loads(data)
        record["original"] = base64.b64decode(record.pop("original_b64"))
        record.pop("original_size", None)
        return cls.model_validate(record)


def message_key(event: ServedRewrite | FeedbackEvent) -> bytes:
    """The Kafka message key: the request id, so a request's rewrite and its feedback land in the same
    partition number of their topics (the aggregator joins partition p of one with partition p of the other)."""
    return event.request_id.encode("utf-8")


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"] if p not in ("served_rewrite",) + FEEDBACK_TYPES) or "<event>"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


def _classify(raw: bytes, error: ValidationError) -> tuple[str, str]:
    """Turn a failed validation into (error_kind, reason) that a person can act on."""
    try:
        document: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as json_error:
        return "invalid_json", f"not valid JSON: {json_error}"
    if not isinstance(document, dict):
        return "not_an_object", f"expected a JSON object, got {type(document).__name__}"
    version = document.get("schema_version")
    if version is None:
        return "invalid_fields", "schema_version: Field required"
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        return "unknown_version", (
            f"unknown schema_version {version!r}; this consumer understands {list(SUPPORTED_VERSIONS)}"
        )
    return "invalid_fields", _describe(error)


def parse_event(
    raw: bytes, *, topic: str | None = None, partition: int | None = None, offset: int | None = None
) -> ServedRewrite | FeedbackEvent | DeadLetter:
    """Validate one message value; a :class:`DeadLetter` instead of an exception when it is bad."""
    source = dict(source_topic=topic, source_partition=partition, source_offset=offset)
    if raw is None:
        return DeadLetter(reason="empty message (null value)", error_kind="invalid_json", original=b"", **source)
    if len(raw) > MAX_EVENT_BYTES:
        return DeadLetter(
            reason=f"payload of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
            error_kind="too_large",
            original=bytes(raw),
            **source,
        )
    try:
        event = _EVENT_ADAPTER.validate_json(raw)
    except ValidationError as error:
        kind, reason = _classify(raw, error)
        return DeadLetter(reason=reason, error_kind=kind, original=bytes(raw), **source)
    # Python callers get the current version by default; a message on the wire must say which it is.
    if "schema_version" not in event.model_fields_set:
        return DeadLetter(
            reason="schema_version: Field required", error_kind="invalid_fields", original=bytes(raw), **source
        )
    return event
