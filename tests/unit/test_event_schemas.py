"""The published JSON Schemas of the event formats agree with what the aggregator's parser accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest

from minielm.cli.manifests import EVENT_SCHEMAS_DIR
from minielm.feedback.events import DeadLetter, FeedbackEvent, ServedRewrite, parse_event
from minielm.feedback.schemas import dead_letter_schema, event_schemas, feedback_event_schema, served_rewrite_schema

TS = 1_764_000_000.0
CLICK = {
    "schema_version": 1,
    "request_id": "r1",
    "query": "blu shoos",
    "ts": TS,
    "event_type": "click",
    "product_id": "B01",
    "position": 0,
}
REFORMULATION = {
    "schema_version": 1,
    "request_id": "r1",
    "query": "blu shoos",
    "ts": TS,
    "event_type": "reformulation",
    "reformulated_query": "blue running shoes",
}
SERVED = ServedRewrite(
    request_id="r1",
    query="blu shoos",
    rewrite="blue shoes",
    model_name="student-rewriter",
    model_version="v1",
    product_ids=["B01"],
    ts=TS,
).model_dump(mode="json")

FEEDBACK_CASES = [
    CLICK,
    REFORMULATION,
    {**CLICK, "extra_field": "ignored"},
    {k: v for k, v in CLICK.items() if k != "product_id"},  # product events need a product
    {**REFORMULATION, "product_id": "B01"},  # a reformulation names none
    {k: v for k, v in CLICK.items() if k != "schema_version"},
    {**CLICK, "schema_version": 2},
    {**CLICK, "position": "3"},  # strict: no coercion
    {**CLICK, "position": -1},
    {**CLICK, "ts": 0},
    {**CLICK, "event_type": "hover"},
    {**CLICK, "request_id": ""},
    {**CLICK, "query": "x" * 1025},
]


@pytest.mark.parametrize("document", FEEDBACK_CASES, ids=range(len(FEEDBACK_CASES)))
def test_feedback_schema_accepts_exactly_what_the_parser_accepts(document):
    parsed = parse_event(json.dumps(document).encode())
    by_code = isinstance(parsed, FeedbackEvent)
    by_schema = jsonschema.Draft202012Validator(feedback_event_schema()).is_valid(document)
    assert by_schema == by_code, (document, parsed)


def test_served_rewrite_schema_accepts_what_serving_logs_and_rejects_a_missing_version():
    validator = jsonschema.Draft202012Validator(served_rewrite_schema())
    assert validator.is_valid(SERVED) and isinstance(parse_event(json.dumps(SERVED).encode()), ServedRewrite)
    assert not validator.is_valid({k: v for k, v in SERVED.items() if k != "model_version"})


def test_dead_letter_schema_matches_the_wire_format():
    letter = parse_event(b'{"schema_version": 1, "request_id": "r1"}', topic="minielm.feedback", partition=0, offset=7)
    assert isinstance(letter, DeadLetter)
    jsonschema.Draft202012Validator(dead_letter_schema()).validate(json.loads(letter.to_bytes()))


def test_schemas_are_valid_and_the_published_files_are_current():
    for name, schema in event_schemas().items():
        jsonschema.Draft202012Validator.check_schema(schema)
        published = EVENT_SCHEMAS_DIR / name
        assert published.is_file(), f"{published} missing: run `minielm manifests render`"
        assert json.loads(published.read_text()) == schema, f"{published} is stale: run `minielm manifests render`"
