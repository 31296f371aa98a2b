"""kafka-python producers and consumers configured from the settings (Tansu-friendly timeouts)."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer

from minielm.config import KafkaConfig


def make_producer(config: KafkaConfig, **overrides) -> KafkaProducer:
    """An idempotent-enough producer: acks=all, gzip (the only codec Tansu needs no extra libs for)."""
    options = dict(
        bootstrap_servers=config.bootstrap_servers,
        client_id=config.client_id,
        acks="all",
        compression_type="gzip",
        linger_ms=5,
        request_timeout_ms=config.request_timeout_ms,
    )
    options.update(overrides)
    return KafkaProducer(**options)


def make_consumer(config: KafkaConfig, *topics: str, group_id: str | None = None, **overrides) -> KafkaConsumer:
    """A consumer with manual commits; callers commit only after their output is durable."""
    options = dict(
        bootstrap_servers=config.bootstrap_servers,
        client_id=config.client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        request_timeout_ms=max(config.request_timeout_ms, config.session_timeout_ms + 5000),
    )
    options.update(overrides)
    return KafkaConsumer(*topics, **options)
