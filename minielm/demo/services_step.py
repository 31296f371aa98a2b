"""The demo's first steps: one object through the embedded S3 server and one message through Kafka."""

from __future__ import annotations

import uuid

from minielm.demo.runner import DemoContext


def s3_round_trip(ctx: DemoContext) -> None:
    key = f"demo/hello-{uuid.uuid4().hex[:8]}.json"
    ctx.store.put_json(key, {"hello": "minielm"})
    value = ctx.store.get_json(key)
    ctx.echo(f"  wrote and read s3://{ctx.store.bucket}/{key} -> {value}")
    ctx.artifacts.s3_round_trip = value


def kafka_round_trip(ctx: DemoContext) -> None:
    from minielm.kafka_io import make_consumer, make_producer

    topic = ctx.settings.kafka.topics.rewrites
    marker = uuid.uuid4().hex
    producer = make_producer(ctx.settings.kafka)
    metadata = producer.send(topic, key=marker.encode(), value=b'{"demo": true}').get(timeout=30)
    producer.close()
    consumer = make_consumer(ctx.settings.kafka, group_id=None, consumer_timeout_ms=10000)
    from kafka import TopicPartition

    partition = TopicPartition(topic, metadata.partition)
    consumer.assign([partition])
    consumer.seek(partition, metadata.offset)
    received = next(iter(consumer), None)
    consumer.close()
    if received is None or received.key != marker.encode():
        raise RuntimeError(f"the demo message did not come back from {topic}")
    ctx.echo(
        f"  produced and consumed one message on {topic} (partition {metadata.partition}, offset {metadata.offset})"
    )
    ctx.artifacts.kafka_round_trip = {"partition": metadata.partition, "offset": metadata.offset}
