"""JSON Schemas of the event formats on the Kafka topics, generated from the pydantic models.

What the shop front end (feedback) and any other consumer of the topics (served rewrites, dead
letters) code against. ``minielm manifests render`` writes them to ``docs/schemas/`` and a test keeps
those files equal to what the code accepts. Rules the models check in code are added here in JSON
Schema terms: ``schema_version`` is required on the wire, a feedback event's ``product_id`` is
required except for a reformulation (where it must be null), and the dead letter's original bytes
travel base64-encoded.
"""

from __future__ import annotations

import copy
from typing import Any

from minielm.feedback.events import SCHEMA_VERSION, DeadLetter, FeedbackEvent, ServedRewrite

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_BASE = "https://minielm.io/schemas"


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _base(model, name: str, description: str) -> dict[str, Any]:
    schema = _strip_titles(model.model_json_schema(mode="validation"))
    required = schema.setdefault("required", [])
    if "schema_version" in schema["properties"] and "schema_version" not in required:
        required.insert(0, "schema_version")
    if "ts" in schema["properties"]:
        schema["properties"]["ts"] = {"type": "number", "exclusiveMinimum": 0, "description": "epoch seconds"}
    schema.pop("description", None)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_BASE}/{name}-v{SCHEMA_VERSION}.json",
        "title": name,
        "description": description,
        **schema,
    }


def served_rewrite_schema() -> dict[str, Any]:
    return _base(
        ServedRewrite,
        "served_rewrite",
        "One served request on the rewrites topic (message key: request_id). Extra fields are ignored.",
    )


def feedback_event_schema() -> dict[str, Any]:
    schema = _base(
        FeedbackEvent,
        "feedback_event",
        "What a shopper did with a served result list, on the feedback topic (message key: request_id, the "
        "id the server returned). position is the 0-based rank in the served list. Extra fields are ignored.",
    )
    schema["if"] = {"properties": {"event_type": {"const": "reformulation"}}, "required": ["event_type"]}
    schema["then"] = {"properties": {"product_id": {"type": "null"}}}
    schema["else"] = {"required": ["product_id"], "properties": {"product_id": {"type": "string"}}}
    return schema


def dead_letter_schema() -> dict[str, Any]:
    schema = _base(
        DeadLetter,
        "dead_letter",
        "An event that failed validation, on the dead-letter topic: why, where it came from, its original bytes.",
    )
    properties = copy.deepcopy(schema["properties"])
    properties.pop("original")
    properties["original_b64"] = {"type": "string", "contentEncoding": "base64", "description": "the exact bytes"}
    properties["original_size"] = {"type": "integer", "minimum": 0}
    schema["properties"] = properties
    schema["required"] = [r for r in schema["required"] if r != "original"] + ["original_b64", "original_size"]
    return schema


def event_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for ``docs/schemas/``."""
    return {
        "served_rewrite.schema.json": served_rewrite_schema(),
        "feedback_event.schema.json": feedback_event_schema(),
        "dead_letter.schema.json": dead_letter_schema(),
    }
