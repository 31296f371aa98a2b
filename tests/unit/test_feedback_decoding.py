"""The aggregator's fast decoding accepts exactly what the pydantic event models accept, with their reasons."""

from __future__ import annotations

import json

import msgspec
import pytest

from minielm.feedback.decoding import (
    FeedbackRecord,
    ServedRecord,
    decode_batch,
    decode_event,
    decode_messages,
    event_json,
)
from minielm.feedback.events import MAX_EVENT_BYTES, DeadLetter, FeedbackEvent, ServedRewrite, parse_event

SERVED = {
    "schema_version": 1,
    "event_type": "served_rewrite",
    "request_id": "r-1",
    "query": "red shoos",
    "rewrite": "red shoes",
    "model_name": "student-rewriter",
    "model_version": "3",
    "product_ids": ["p1", "p2"],
    "ts": 1_700_000_000.5,
}
CLICK = {
    "schema_version": 1,
    "event_type": "click",
    "request_id": "r-1",
    "query": "red shoos",
    "product_id": "p2",
    "position": 1,
    "ts": 1_700_000_001.0,
}


def edited(base: dict, **changes) -> bytes:
    record = {**base, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}, ensure_ascii=False).encode()


VALID = [
    (True, edited(SERVED)),
    (True, edited(SERVED, product_ids=...)),  # defaults to no products
    (True, edited(SERVED, ts=1_700_000_000, extra_field="ignored")),  # an integer timestamp is a number
    (True, edited(SERVED, query="é" * 1024)),  # the limit counts characters, not bytes
    (True, edited(SERVED, exploration=True, exploration_rank=2, greedy_rewrite="red shoe")),
    (False, edited(CLICK)),
    (False, edited(CLICK, event_type="reformulation", product_id=None, position=None, reformulated_query="x")),
    (False, edited(CLICK, event_type="reformulation", product_id=...)),
    (False, edited(CLICK, position=None)),
]
BAD = [
    (False, b"{not json"),
    (False, b"\xff\xfe"),
    (False, b"[1, 2]"),
    (False, b'"text"'),
    (False, b"null"),
    (False, None),
    (False, b"x" * (MAX_EVENT_BYTES + 1)),
    (False, edited(CLICK, schema_version=2)),
    (False, edited(CLICK, schema_version="1")),
    (False, edited(CLICK, schema_version=...)),
    (False, edited(CLICK, event_type=...)),
    (False, edited(CLICK, event_type="hover")),
    (False, edited(CLICK, request_id="")),
    (False, edited(CLICK, request_id="r" * 129)),
    (False, edited(CLICK, request_id=7)),
    (False, edited(CLICK, product_id=None)),
    (False, edited(CLICK, product_id="")),
    (False, edited(CLICK, event_type="reformulation")),  # a product on a reformulation
    (False, edited(CLICK, position="3")),
    (False, edited(CLICK, position=3.0)),
    (False, edited(CLICK, position=True)),
    (False, edited(CLICK, position=-1)),
    (False, edited(CLICK, position=1001)),
    (False, edited(CLICK, ts="yesterday")),
    (False, edited(CLICK, ts=-5)),
    (False, edited(CLICK, ts=0)),
    (False, edited(CLICK, ts=True)),
    (False, edited(CLICK, ts=...)),
    (False, edited(CLICK, query="é" * 1025)),
    (False, edited(CLICK, query=None)),
    (False, edited(CLICK).replace(b"1700000001.0", b"1e400")),
    (False, edited(CLICK).replace(b"1700000001.0", b"NaN")),
    (False, edited(CLICK).replace(b'"red shoos"', b'"red \\ud800"')),  # a lone surrogate
    (False, edited(CLICK).replace(b"red shoos", b"red \xff")),  # not UTF-8
    (True, edited(SERVED, product_ids="p1,p2")),
    (True, edited(SERVED, product_ids=[""])),
    (True, edited(SERVED, product_ids=["p"] * 1001)),
    (True, edited(SERVED, model_version=...)),
    (True, edited(SERVED, model_name="")),
    (True, edited(SERVED, rewrite=None)),
    (True, edited(SERVED, event_type=...)),
    (True, edited(SERVED, exploration="yes")),
    (True, edited(SERVED, exploration=1)),
    (True, edited(SERVED, exploration_rank=-1)),
    (True, edited(SERVED, exploration_rank=1.5)),
]


@pytest.mark.parametrize("rewrites_topic, raw", VALID)
def test_valid_events_decode_to_structs_with_the_models_fields(rewrites_topic, raw):
    record = decode_event(raw, rewrites_topic, "t", 0, 5)
    assert isinstance(record, ServedRecord if rewrites_topic else FeedbackRecord)
    model = parse_event(raw)
    assert msgspec.structs.asdict(record) == model.model_dump()


@pytest.mark.parametrize("rewrites_topic, raw", BAD)
def test_what_the_models_reject_becomes_the_same_dead_letter(rewrites_topic, raw):
    letter = decode_event(raw, rewrites_topic, "t", 1, 7)
    expected = parse_event(raw, topic="t", partition=1, offset=7)
    assert isinstance(expected, DeadLetter), "the corpus holds only events the models reject"
    assert isinstance(letter, DeadLetter)
    assert (letter.error_kind, letter.reason, letter.original) == (expected.error_kind, expected.reason, raw or b"")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("t", 1, 7)


@pytest.mark.parametrize("raw", [edited(CLICK, schema_version=True), edited(CLICK, schema_version=1.0)])
def test_where_the_structs_are_stricter_the_models_verdict_stands(raw):
    event = decode_event(raw, False, "t", 0, 0)
    assert not isinstance(event, DeadLetter)
    assert (event.event_type, event.request_id, event.product_id) == ("click", "r-1", "p2")


def test_a_valid_event_on_the_other_topic_is_returned_for_the_caller_to_dead_letter():
    served_on_feedback = decode_event(edited(SERVED), False, "t", 0, 0)
    click_on_rewrites = decode_event(edited(CLICK), True, "t", 0, 0)
    assert served_on_feedback.event_type == "served_rewrite"
    assert click_on_rewrites.event_type == "click"


def test_event_json_is_what_the_models_read_back():
    record = decode_event(edited(CLICK), False, "t", 0, 0)
    assert FeedbackEvent.model_validate_json(event_json(record)) == parse_event(edited(CLICK))
    model = ServedRewrite.model_validate_json(edited(SERVED))
    assert event_json(model) == model.model_dump_json()


def test_the_structs_carry_every_field_of_the_models():
    assert set(ServedRecord.__struct_fields__) == set(ServedRewrite.model_fields)
    assert set(FeedbackRecord.__struct_fields__) == set(FeedbackEvent.model_fields)


class Message:
    """The three accessors of a confluent-kafka message that decoding reads."""

    def __init__(self, offset: int, value: bytes | None) -> None:
        self._offset, self._value = offset, value

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return b"k"


def one_by_one(values, rewrites_topic: bool) -> list:
    """What decode_event (plus the wrong-topic rule) makes of each value: a dict or (error_kind, reason)."""
    out = []
    for offset, raw in enumerate(values):
        event = decode_event(raw, rewrites_topic, "t", 0, offset)
        if isinstance(event, DeadLetter):
            out.append((event.error_kind, event.reason))
        elif rewrites_topic != (event.event_type == "served_rewrite"):
            out.append(("wrong_topic", event.event_type))
        else:
            out.append(msgspec.to_builtins(event) if isinstance(event, msgspec.Struct) else event.model_dump())
    return out


def batched(values, rewrites_topic: bool) -> list:
    batch = decode_messages([Message(o, v) for o, v in enumerate(values)], rewrites_topic, "t", 0)
    out: dict[int, object] = {}
    for offset, event in zip(batch.offsets, batch.events):
        out[offset] = msgspec.to_builtins(event) if isinstance(event, msgspec.Struct) else event.model_dump()
    for offset, _, letter in batch.dead_letters:
        kind = letter.error_kind
        out[offset] = (kind, letter.reason.split("'")[1] if kind == "wrong_topic" else letter.reason)
    assert sorted(out) == list(range(len(values))), "every message is an event or a dead letter, once"
    return [out[offset] for offset in range(len(values))]


@pytest.mark.parametrize("rewrites_topic", [True, False])
def test_a_batch_decodes_to_what_each_message_decodes_to(rewrites_topic):
    good = [raw for topic, raw in VALID if topic == rewrites_topic] * 3
    assert batched(good, rewrites_topic) == one_by_one(good, rewrites_topic)
    assert decode_batch(good, rewrites_topic) is not None, "a batch of valid events takes the one-call path"
    for _, raw in BAD + VALID:  # one bad or misplaced value in the middle of good ones
        values = good[:2] + [raw] + good[2:]
        assert batched(values, rewrites_topic) == one_by_one(values, rewrites_topic)


def test_values_that_could_shift_the_lines_of_a_batch_take_the_one_by_one_path():
    click = edited(CLICK)
    shifting = [
        [click, b"", click + b" " + click],  # a blank line and a line with two events: the count still matches
        [click, b"  \t", click + b" " + click],
        [click, click + b"\n" + click],  # a newline inside a value
    ]
    for values in shifting:
        assert decode_batch(values, False) is None
        assert any(isinstance(v, tuple) for v in one_by_one(values, False))
        assert batched(values, False) == one_by_one(values, False)
