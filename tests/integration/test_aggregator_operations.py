"""On-call's view of the aggregator on the real broker and S3: metrics and probes while it runs, and
``minielm feedback dlq show|replay`` re-injecting fixed events while keeping the ones that fail again."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from minielm.cli import app
from minielm.feedback.aggregator import Aggregator
from minielm.feedback.dead_letters import replay_dead_letters, show_dead_letters
from minielm.feedback.events import DeadLetter, FeedbackEvent, parse_event
from minielm.feedback.observability import AggregatorMetrics, HealthServer
from minielm.kafka_io import make_consumer, make_producer
from minielm.storage import ObjectStore
from tests.integration.feedback_support import CountedStream, isolated_settings, write_config

pytestmark = pytest.mark.integration

TS = 1_764_000_000.0


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_metrics_and_probes_while_the_aggregator_runs(embedded_services):
    settings = isolated_settings(embedded_services, window_s=0.5, grace_s=0.2)
    stream = CountedStream(settings)
    stream.send(0, 40)
    producer = make_producer(settings.kafka)
    producer.send(settings.kafka.topics.feedback, key=b"bad", value=b"{not json")
    producer.flush()
    producer.close()
    stream.close()
    metrics = AggregatorMetrics()
    health = HealthServer(metrics, "127.0.0.1", 0, stall_after_s=30).start()
    try:
        base = f"http://127.0.0.1:{health.port}"
        assert httpx.get(f"{base}/readyz").status_code == 503  # not consuming yet
        aggregator = Aggregator(settings, store=ObjectStore(settings.s3), metrics=metrics)
        stats = aggregator.run(until_idle_s=2.0, max_seconds=60)
        text = httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        health.stop()
    feedback_events = sum(sum(c.values()) for c in stream.expected.values())
    assert _metric(text, 'minielm_aggregator_events_total{type="served_rewrite"}') == 40
    assert _metric(text, "minielm_aggregator_events_total{") == 40 + feedback_events
    assert _metric(text, 'minielm_aggregator_dead_letters_total{kind="invalid_json"}') == 1
    assert _metric(text, "minielm_aggregator_windows_written_total") == stats.windows_written > 0
    assert _metric(text, "minielm_aggregator_last_commit_timestamp_seconds") > TS
    assert "minielm_aggregator_consumer_lag{" in text
    assert _metric(text, "minielm_aggregator_consumer_lag{") == 0  # everything consumed


def _dead_letter_topic_holds(settings, letters: list[DeadLetter]) -> None:
    producer = make_producer(settings.kafka)
    for letter in letters:
        producer.send(settings.kafka.topics.dead_letter, value=letter.to_bytes())
    producer.flush()
    producer.close()


def test_dlq_replay_reinjects_fixed_events_and_keeps_the_ones_that_fail_again(embedded_services, tmp_path):
    settings = isolated_settings(embedded_services, partitions=1)
    topics = settings.kafka.topics
    fixed = FeedbackEvent(
        event_type="click", request_id="r-fixed", query="blu shoos", product_id="B01", position=0, ts=TS
    ).to_bytes()
    still_bad = b'{"schema_version": 1, "request_id": "r-bad", "event_type": "click"}'
    # What an older, stricter consumer rejected, and a producer bug that is not fixed yet.
    _dead_letter_topic_holds(
        settings,
        [
            DeadLetter(
                reason="old consumer bug", error_kind="invalid_fields", original=fixed, source_topic=topics.feedback
            ),
            parse_event(still_bad, topic=topics.feedback, partition=0, offset=3),
        ],
    )
    shown = show_dead_letters(settings, idle_s=1.0)
    assert [s.letter.original for s in shown] == [fixed, still_bad]

    config = write_config(settings, tmp_path / "settings.yaml")
    result = CliRunner().invoke(app, ["--config", str(config), "feedback", "dlq", "show", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert [row["kind"] for row in json.loads(result.output)] == ["invalid_fields", "invalid_fields"]

    replay = CliRunner().invoke(app, ["--config", str(config), "feedback", "dlq", "replay"])
    assert replay.exit_code == 2, replay.output
    assert f"replayed: 1 to {topics.feedback}" in replay.output
    assert "1 dead letter(s) failed validation again and stay in" in replay.output
    assert "query: Field required" in replay.output

    feedback = make_consumer(settings.kafka, topics.feedback, group_id=None, consumer_timeout_ms=3000)
    reinjected = [(record.key, record.value) for record in feedback]
    feedback.close()
    assert reinjected == [(b"r-fixed", fixed)]
    after = show_dead_letters(settings, idle_s=1.0)
    assert [s.letter.original for s in after] == [fixed, still_bad, still_bad]  # nothing lost
    assert after[-1].letter.reason.startswith("replay failed again: ")

    again = replay_dead_letters(settings, idle_s=1.0)  # only what the last replay appended
    assert again.read == 1 and again.replayed == {} and len(again.failed_again) == 1
