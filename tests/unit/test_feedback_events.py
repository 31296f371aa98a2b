"""The event schemas: valid events round-trip, every kind of bad input becomes a dead letter with a reason."""

from __future__ import annotations

import json

import pytest

from minielm.feedback.events import (
    MAX_EVENT_BYTES,
    DeadLetter,
    FeedbackEvent,
    ServedRewrite,
    parse_event,
)


def _served() -> ServedRewrite:
    return ServedRewrite(
        request_id="r-1",
        query="red shoos",
        rewrite="red shoes",
        model_name="student-rewriter",
        model_version="3",
        product_ids=["p1", "p2"],
        ts=1_700_000_000.5,
    )


def test_valid_events_round_trip():
    served = _served()
    assert parse_event(served.to_bytes()) == served
    for kind in ("impression", "click", "add_to_cart", "purchase"):
        event = FeedbackEvent(
            event_type=kind, request_id="r-1", query="red shoos", product_id="p2", position=1, ts=1_700_000_001.0
        )
        assert parse_event(event.to_bytes()) == event
    reform = FeedbackEvent(
        event_type="reformulation",
        request_id="r-1",
        query="red shoos",
        reformulated_query="red sneakers",
        ts=1_700_000_002.0,
    )
    parsed = parse_event(reform.to_bytes())
    assert isinstance(parsed, FeedbackEvent) and parsed.reformulated_query == "red sneakers"


def test_wire_format_matches_contract():
    record = json.loads(_served().to_bytes())
    assert record["schema_version"] == 1 and record["event_type"] == "served_rewrite"
    assert set(record) >= {"request_id", "query", "rewrite", "model_name", "model_version", "product_ids", "ts"}


def _click(**changes) -> bytes:
    record = {
        "schema_version": 1,
        "event_type": "click",
        "request_id": "r",
        "query": "q",
        "product_id": "p",
        "position": 0,
        "ts": 1.0,
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "raw, kind, words",
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        (b"\xff\xfe", "invalid_json", "not valid JSON"),
        (b"[1, 2]", "not_an_object", "JSON object"),
        (_click(schema_version=2), "unknown_version", "unknown schema_version 2"),
        (_click(schema_version="1"), "unknown_version", "unknown schema_version '1'"),
        (_click(schema_version=...), "invalid_fields", "schema_version"),
        (_click(request_id=...), "invalid_fields", "request_id"),
        (_click(product_id=None), "invalid_fields", "product_id is required"),
        (_click(event_type="reformulation"), "invalid_fields", "product_id must be null"),
        (_click(position="3"), "invalid_fields", "position"),
        (_click(ts="yesterday"), "invalid_fields", "ts"),
        (_click(ts=-5), "invalid_fields", "ts"),
        (_click(event_type="hover"), "invalid_fields", "hover"),
        (_click(query="x" * 5000), "invalid_fields", "query"),
        (b"x" * (MAX_EVENT_BYTES + 1), "too_large", "exceeds"),
    ],
)
def test_bad_events_become_dead_letters(raw, kind, words):
    result = parse_event(raw, topic="t", partition=1, offset=7)
    assert isinstance(result, DeadLetter)
    assert result.error_kind == kind
    assert words in result.reason
    assert result.original == raw
    assert (result.source_topic, result.source_partition, result.source_offset) == ("t", 1, 7)
    assert DeadLetter.from_bytes(result.to_bytes()) == result
