"""Kafka clients configured from the settings (Tansu-friendly timeouts, TLS/SASL).

Two clients: librdkafka (confluent-kafka) where throughput matters, i.e. the feedback aggregator and
serving's rewrite log (it consumed 1.17M msg/s where kafka-python did 8.3k on the same gzip batches);
kafka-python for the small tools (simulator, dead-letter CLI, demo, tests). Both pick a keyed message's
partition with murmur2, so a request's rewrite and its feedback land in the same partition number
whichever client produced them (the aggregator's join depends on it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer

from minielm.config import ConfigError, KafkaConfig

# librdkafka's own log lines (broker connects and disconnects) go through the logging module, not stderr.
LIBRDKAFKA_LOGGER = logging.getLogger("minielm.kafka.librdkafka")


def _sasl_password(config: KafkaConfig) -> str:
    if config.sasl_password is None:
        raise ConfigError(
            f"kafka.sasl_password: security_protocol={config.security_protocol} needs a password; set "
            "$MINIELM_KAFKA__SASL_PASSWORD (the chart takes it from kafka.sasl.existingSecret)"
        )
    return config.sasl_password.get_secret_value()


def security_options(config: KafkaConfig) -> dict[str, Any]:
    """kafka-python keyword arguments for the configured security protocol (none for PLAINTEXT)."""
    options: dict[str, Any] = {"security_protocol": config.security_protocol}
    if config.sasl_mechanism:
        options.update(
            sasl_mechanism=config.sasl_mechanism,
            sasl_plain_username=config.sasl_username,
            sasl_plain_password=_sasl_password(config),
        )
    for option, path in (
        ("ssl_cafile", config.ssl_cafile),
        ("ssl_certfile", config.ssl_certfile),
        ("ssl_keyfile", config.ssl_keyfile),
    ):
        if path is not None:
            options[option] = str(path)
    if config.security_protocol.endswith("SSL"):
        options["ssl_check_hostname"] = True
    return options


def librdkafka_security_options(config: KafkaConfig) -> dict[str, str]:
    """The same settings as librdkafka (confluent-kafka) configuration keys."""
    options = {"security.protocol": config.security_protocol.lower()}
    if config.sasl_mechanism:
        options.update(
            {
                "sasl.mechanism": config.sasl_mechanism,
                "sasl.username": config.sasl_username or "",
                "sasl.password": _sasl_password(config),
            }
        )
    for option, path in (
        ("ssl.ca.location", config.ssl_cafile),
        ("ssl.certificate.location", config.ssl_certfile),
        ("ssl.key.location", config.ssl_keyfile),
    ):
        if path is not None:
            options[option] = str(path)
    return options


def make_producer(config: KafkaConfig, **overrides) -> KafkaProducer:
    """An idempotent-enough producer: acks=all, gzip (the only codec Tansu needs no extra libs for)."""
    options = dict(
        bootstrap_servers=config.bootstrap_servers,
        client_id=config.client_id,
        acks="all",
        compression_type="gzip",
        linger_ms=5,
        request_timeout_ms=config.request_timeout_ms,
        **security_options(config),
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
        **security_options(config),
    )
    options.update(overrides)
    return KafkaConsumer(*topics, **options)


def make_rdkafka_producer(config: KafkaConfig, overrides: Mapping[str, Any] | None = None) -> Producer:
    """An idempotent librdkafka producer (acks=all, no duplicates on retry), gzip (kafka-python readers need
    no extra codec library), murmur2 partitioning like kafka-python and the Java client."""
    options: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": config.client_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "gzip",
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        "request.timeout.ms": config.request_timeout_ms,
        "logger": LIBRDKAFKA_LOGGER,
        **librdkafka_security_options(config),
    }
    options.update(overrides or {})
    return Producer(options)


def make_rdkafka_consumer(config: KafkaConfig, group_id: str, overrides: Mapping[str, Any] | None = None) -> Consumer:
    """A librdkafka group consumer with manual commits and the range assignor (partition p of every
    subscribed topic goes to the same member); callers commit only after their output is durable."""
    options: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": config.client_id,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": config.session_timeout_ms,
        "heartbeat.interval.ms": config.heartbeat_interval_ms,
        "logger": LIBRDKAFKA_LOGGER,
        **librdkafka_security_options(config),
    }
    options.update(overrides or {})
    return Consumer(options)
