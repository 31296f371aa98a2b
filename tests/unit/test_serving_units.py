"""Serving pieces without servers: payload validation, UTF-8 guard, model-dir dispatch, the Kafka log's drop path."""

from __future__ import annotations

import json
import socket
import time

import pytest
from kserve.errors import InvalidInput

import serving  # noqa: F401  (imports kserve with a clean argv)
from minielm.config import ServingConfig, load_settings
from minielm.feedback.events import ServedRewrite
from serving.loading import CROSS_ENCODER_CLASS, ModelLoadError, load_model_dir, model_class_for
from serving.metrics import KAFKA_DROPPED, error_type
from serving.request_log import RewriteLog
from serving.server import utf8_error
from serving.validation import check_text, parse_v1, request_id_from
from tests.serving_standins import SPELLING, SpellingRewriter

CONFIG = ServingConfig(max_batch_size=4, max_query_chars=32)
FIELDS = {"query": "text", "product_ids": "ids"}


@pytest.mark.parametrize(
    "payload, field",
    [
        (None, "request body"),
        ({}, "instances: required"),
        ({"instances": {"query": "x"}}, "instances: expected a list"),
        ({"instances": ["a"] * 5}, "exceeds serving.max_batch_size=4"),
        ({"instances": [7]}, "instances[0]: expected an object"),
        ({"instances": [{"query": "ok"}, {"query": 3.5}]}, "instances[1].query: expected a string, got float"),
        ({"instances": [{"query": "x" * 33}]}, "instances[0].query: 33 characters exceeds the limit of 32"),
        ({"instances": [{"query": "a\x00b"}]}, "instances[0].query: contains control characters"),
        ({"instances": [{"query": "\udcff"}]}, "instances[0].query: expected UTF-8 text"),
        ({"instances": [{"query": "ok", "product_ids": "B01"}]}, "instances[0].product_ids: expected a list"),
        ({"instances": [{"query": "ok", "product_ids": [1]}]}, "instances[0].product_ids[0]: expected a string"),
        ({"instances": [{"query": "ok", "extra": 1}]}, "instances[0].extra: unknown field"),
        ({"instances": ["ok"], "parameters": [1]}, "parameters: expected an object"),
    ],
)
def test_parse_v1_rejects_with_the_field_named(payload, field):
    with pytest.raises(InvalidInput) as error:
        parse_v1(payload, FIELDS, CONFIG)
    assert field in str(error.value)


def test_parse_v1_accepts_strings_and_objects():
    parsed = parse_v1(
        {"instances": ["blue hat", {"query": "red shoes", "product_ids": ["B1"]}], "parameters": {"num_return": 2}},
        FIELDS,
        CONFIG,
    )
    assert parsed.instances == [{"query": "blue hat"}, {"query": "red shoes", "product_ids": ["B1"]}]
    assert parsed.parameters == {"num_return": 2}


def test_parse_v1_reads_json_sent_with_another_content_type():
    assert parse_v1(b'{"instances": ["hat"]}', FIELDS, CONFIG).instances == [{"query": "hat"}]
    with pytest.raises(InvalidInput, match="request body: expected JSON"):
        parse_v1(b"query=hat", FIELDS, CONFIG)


def test_check_text_decodes_bytes_strictly():
    assert check_text("café".encode(), "q", 10) == "café"
    with pytest.raises(InvalidInput, match="q: expected UTF-8 text, invalid byte at position 3"):
        check_text(b"caf\xe9", "q", 10)


def test_request_id_from_header_or_fresh():
    assert request_id_from({"x-request-id": "abc-1"}) == "abc-1"
    assert request_id_from({}, "v2-id") == "v2-id"
    fresh = request_id_from({"x-request-id": "bad id with spaces"})
    assert fresh != "bad id with spaces" and len(fresh) == 32


def test_utf8_guard_names_the_field():
    assert utf8_error(json.dumps({"instances": ["ok"]}).encode()) is None
    message = utf8_error(b'{"instances": [{"query": "ok"}, {"query": "caf\xe9"}]}')
    assert message.startswith("instances[1].query: expected UTF-8 text")
    assert utf8_error(b"\xff{").startswith("request body:")


def test_error_types():
    assert [error_type(c) for c in (200, 400, 404, 503, 500, 418)] == [
        None,
        "invalid_input",
        "not_found",
        "not_ready",
        "internal",
        "client",
    ]


def test_model_dispatch(tmp_path):
    rewriter_dir = SpellingRewriter(SPELLING).save(tmp_path / "rewriter")
    model = load_model_dir(rewriter_dir, "rewriter")
    assert model.rewrite(["wireles hedphones"]) == [["wireless headphones"]]
    with pytest.raises(ModelLoadError, match="does not implement RelevanceScorer"):
        load_model_dir(rewriter_dir, "relevance")
    cross = tmp_path / "cross"
    cross.mkdir()
    (cross / "cross_encoder.json").write_text("{}")
    assert model_class_for(cross, "relevance") == CROSS_ENCODER_CLASS
    with pytest.raises(ModelLoadError, match="cannot serve as a rewriter"):
        model_class_for(cross, "rewriter")
    causal = tmp_path / "causal"
    causal.mkdir()
    (causal / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert model_class_for(causal, "rewriter") == "minielm.models.rewriter:CausalRewriter"
    assert model_class_for(causal, "relevance") == "minielm.models.relevance_teacher:RelevanceTeacher"
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    with pytest.raises(ModelLoadError, match="cannot tell what model this is"):
        model_class_for(unknown, "rewriter")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_dir(tmp_path / "missing", "rewriter")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_rewrite_log_never_blocks_and_counts_drops_when_the_broker_is_down():
    settings = load_settings(
        overrides=[f"kafka.bootstrap_servers=127.0.0.1:{_closed_port()}", "serving.kafka_buffer_size=2"],
        environ={},
        use_services_state=False,
    )
    before = KAFKA_DROPPED._value.get()
    rewrite_log = RewriteLog(settings, reconnect_backoff_s=0.2)
    event = ServedRewrite(request_id="r", query="q", rewrite="q", model_name="m", model_version="v", ts=time.time())
    started = time.monotonic()
    accepted = [rewrite_log.submit(event) for _ in range(10)]
    assert time.monotonic() - started < 0.5
    assert accepted.count(False) >= 7  # at most the buffer (2) plus the one being retried were kept
    rewrite_log.close(timeout_s=1)
    assert rewrite_log.sent == 0 and rewrite_log.dropped == 10
    assert KAFKA_DROPPED._value.get() - before == 10
