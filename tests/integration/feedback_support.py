"""Shared helpers of the feedback integration tests: isolated topics/prefixes and counted event streams."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import yaml

from minielm.config import Settings
from minielm.feedback.events import FeedbackEvent, ServedRewrite, message_key
from minielm.feedback.windows import list_windows, read_late_events, read_windows
from minielm.kafka_io import make_producer

FEEDBACK_KINDS = ("impression", "click", "add_to_cart", "purchase", "reformulation")


def isolated_settings(live: Settings, partitions: int = 2, **feedback) -> Settings:
    """Settings with this test's own topics (created), consumer group and S3 prefixes."""
    tag = uuid.uuid4().hex[:8]
    settings = live.model_copy(deep=True)
    settings.kafka.topics.rewrites = f"t{tag}.rewrites"
    settings.kafka.topics.feedback = f"t{tag}.feedback"
    settings.kafka.topics.dead_letter = f"t{tag}.dlq"
    settings.kafka.consumer_group = f"g{tag}"
    settings.feedback.windows_prefix = f"t{tag}/feedback/windows"
    settings.feedback.late_prefix = f"t{tag}/feedback/late"
    settings.feedback.state_prefix = f"t{tag}/feedback/state"
    settings.feedback.push_to_feast = False
    settings.feedback.window_s = feedback.pop("window_s", 1.0)
    settings.feedback.grace_s = feedback.pop("grace_s", 0.5)
    for name, value in feedback.items():
        setattr(settings.feedback, name, value)
    create_topics(settings, partitions)
    return settings


def create_topics(settings: Settings, partitions: int = 2) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, client_id="feedback-tests")
    try:
        admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in settings.kafka.topics.all()]
        )
    finally:
        admin.close()


def write_config(settings: Settings, path: Path) -> Path:
    """A YAML config a subprocess can load (secrets included: test servers only)."""
    data = settings.model_dump(mode="json")
    data["s3"]["access_key_id"] = settings.s3.access_key_id.get_secret_value()
    data["s3"]["secret_access_key"] = settings.s3.secret_access_key.get_secret_value()
    path.write_text(yaml.safe_dump(data))
    return path


def expected_feedback(i: int) -> list[str]:
    """Request i gets a known number and mix of feedback events (0 to 4)."""
    return [FEEDBACK_KINDS[(i + k) % len(FEEDBACK_KINDS)] for k in range(i % 5)]


class CountedStream:
    """Produces served rewrites and their feedback and remembers exactly what it sent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = make_producer(settings.kafka, linger_ms=20)
        self.expected: dict[str, Counter] = {}

    def send(self, start: int, count: int, rate_per_s: float | None = None, prefix: str = "req") -> list[str]:
        topics = self.settings.kafka.topics
        ids = []
        began = time.monotonic()
        for i in range(start, start + count):
            rid = f"{prefix}-{i}"
            now = time.time()
            served = ServedRewrite(
                request_id=rid,
                query=f"query {i % 37}",
                rewrite=f"rewrite {i % 37}",
                model_name="student-rewriter",
                model_version="1",
                product_ids=[f"p{i % 11}", f"p{i % 13}"] if i % 7 else [],
                ts=now,
            )
            self.producer.send(topics.rewrites, key=message_key(served), value=served.to_bytes())
            kinds = expected_feedback(i)
            for kind in kinds:
                product = None if kind == "reformulation" else f"p{i % 11}"
                event = FeedbackEvent(
                    event_type=kind,
                    request_id=rid,
                    query=served.query,
                    product_id=product,
                    position=None if product is None else 0,
                    ts=now + 0.001,
                )
                self.producer.send(topics.feedback, key=message_key(event), value=event.to_bytes())
            self.expected[rid] = Counter(kinds)
            ids.append(rid)
            if rate_per_s:
                ahead = (i - start + 1) / rate_per_s - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        self.producer.flush()
        return ids

    def close(self) -> None:
        self.producer.close()


def landed(store, settings: Settings):
    """(window rows, late rows) currently on S3 under this test's prefixes."""
    keys = list_windows(store, prefix=settings.feedback.windows_prefix)
    return read_windows(store, keys), read_late_events(store, prefix=settings.feedback.late_prefix), keys


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def count_per_request(windows, late) -> dict[str, Counter]:
    """Every feedback event the objects hold, per request id and kind."""
    counts: dict[str, Counter] = {}
    for row in windows.itertuples(index=False):
        counts[row.request_id] = Counter(
            {
                "impression": row.impressions,
                "click": row.clicks,
                "add_to_cart": row.add_to_carts,
                "purchase": row.purchases,
            }
        )
        counts[row.request_id]["_events"] = row.feedback_events
    for row in late.itertuples(index=False):
        counts.setdefault(row.request_id, Counter())["_late"] += 1
    return counts
