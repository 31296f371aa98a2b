"""The two Kafka clients agree where the aggregator's join depends on it, against the real Tansu broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition

from minielm.kafka_io import make_consumer, make_producer, make_rdkafka_producer

pytestmark = pytest.mark.integration
PARTITIONS = 4


def partition_of_each_key(kafka, topic: str) -> dict[bytes, int]:
    consumer = make_consumer(kafka, group_id=None, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    placed = {record.key: record.partition for record in consumer}
    consumer.close()
    return placed


def test_a_key_lands_in_the_same_partition_from_librdkafka_and_kafka_python(embedded_services):
    """Serving's rewrite log (librdkafka) and a kafka-python feedback producer must put a request's events in
    the same partition number, or the aggregator never joins them."""
    kafka = embedded_services.kafka
    tag = uuid.uuid4().hex[:8]
    by_librdkafka, by_kafka_python = f"keys-rd-{tag}", f"keys-py-{tag}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    created = admin.create_topics([NewTopic(t, num_partitions=PARTITIONS) for t in (by_librdkafka, by_kafka_python)])
    for future in created.values():
        future.result(30)
    keys = [f"request-{i}".encode() for i in range(200)]

    producer = make_rdkafka_producer(kafka)
    for key in keys:
        producer.produce(by_librdkafka, key=key, value=b"{}")
    assert producer.flush(30) == 0
    legacy = make_producer(kafka)
    for key in keys:
        legacy.send(by_kafka_python, key=key, value=b"{}")
    legacy.flush()
    legacy.close()

    placed_rd = partition_of_each_key(kafka, by_librdkafka)
    placed_py = partition_of_each_key(kafka, by_kafka_python)
    assert set(placed_rd) == set(placed_py) == set(keys)
    assert len(set(placed_rd.values())) == PARTITIONS  # the keys spread: the comparison can fail
    assert placed_rd == placed_py
