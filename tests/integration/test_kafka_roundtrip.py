"""Produce and consume through the real Tansu broker with a consumer group and manual commits."""

from __future__ import annotations

import uuid

import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from minielm.kafka_io import make_consumer, make_producer

pytestmark = pytest.mark.integration


def test_produce_consume_commit_and_resume(embedded_services):
    kafka = embedded_services.kafka
    topic = f"test-roundtrip-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = make_producer(kafka)
    for index in range(100):
        producer.send(topic, value=f"message-{index}".encode())
    producer.flush()
    producer.close()

    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(kafka, topic, group_id=group, consumer_timeout_ms=15000, max_poll_records=60)
    first = []
    while len(first) < 60:
        for records in consumer.poll(timeout_ms=2000).values():
            first.extend(r.value.decode() for r in records)
    first = first[:60]
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(60, "", -1)})  # processed: the first 60
    consumer.close()

    resumed = make_consumer(kafka, topic, group_id=group, consumer_timeout_ms=10000)
    rest = [record.value.decode() for record in resumed]
    resumed.close()
    assert first + rest == [f"message-{index}" for index in range(100)]
