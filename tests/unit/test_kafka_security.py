"""Kafka TLS/SASL settings: validated as a whole, turned into client options, accepted by the real client."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer

from minielm.config import ConfigError, KafkaConfig, load_settings
from minielm.kafka_io import librdkafka_security_options, security_options

SCRAM = [
    "kafka.security_protocol=SASL_SSL",
    "kafka.sasl_mechanism=SCRAM-SHA-512",
    "kafka.sasl_username=minielm",
    "kafka.ssl_cafile=/etc/minielm-kafka/ca.crt",
]


def test_plaintext_is_the_default_and_adds_no_credentials():
    assert security_options(KafkaConfig()) == {"security_protocol": "PLAINTEXT"}
    assert librdkafka_security_options(KafkaConfig()) == {"security.protocol": "plaintext"}


def test_scram_over_tls_with_the_password_from_the_environment():
    settings = load_settings(overrides=SCRAM, environ={"MINIELM_KAFKA__SASL_PASSWORD": "123456"})
    assert security_options(settings.kafka) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "minielm",
        "sasl_plain_password": "123456",  # an all-digit password stays text
        "ssl_cafile": "/etc/minielm-kafka/ca.crt",
        "ssl_check_hostname": True,
    }
    assert librdkafka_security_options(settings.kafka)["ssl.ca.location"] == "/etc/minielm-kafka/ca.crt"
    assert "123456" not in settings.public_dict()["kafka"].values()  # masked


def test_options_are_accepted_by_kafka_python():
    settings = load_settings(overrides=SCRAM, environ={"MINIELM_KAFKA__SASL_PASSWORD": "s3cret"})
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(2, 5), **security_options(settings.kafka))
    consumer.close()


def test_a_missing_password_is_named_when_a_client_is_made():
    settings = load_settings(overrides=SCRAM, environ={})
    with pytest.raises(ConfigError, match=r"kafka.sasl_password: .*MINIELM_KAFKA__SASL_PASSWORD"):
        security_options(settings.kafka)


@pytest.mark.parametrize(
    "overrides,named",
    [
        (["kafka.security_protocol=SASL_SSL"], "needs sasl_mechanism and sasl_username"),
        (["kafka.sasl_mechanism=PLAIN"], "sasl_mechanism=PLAIN needs security_protocol SASL_PLAINTEXT or SASL_SSL"),
        (["kafka.ssl_cafile=/ca.crt"], "ssl_cafile need security_protocol SSL or SASL_SSL"),
        (["kafka.security_protocol=SSL", "kafka.ssl_certfile=/c.pem"], "ssl_certfile and ssl_keyfile go together"),
        (["kafka.security_protocol=TLS"], "security_protocol"),
        (["kafka.heartbeat_interval_ms=7000"], "heartbeat_interval_ms (7000) must be below session_timeout_ms"),
    ],
)
def test_inconsistent_security_settings_name_the_fields(overrides, named):
    with pytest.raises(ConfigError, match=r"kafka") as caught:
        load_settings(overrides=overrides, environ={})
    assert named in str(caught.value)
