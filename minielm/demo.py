"""The end-to-end demo on embedded defaults: each step is a plain function over a DemoContext.

``minielm demo`` starts the embedded services (or reuses running ones), runs the steps in order
with a progress line per step, prints what each did, and stops what it started.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minielm.config import Settings, load_settings
from minielm.logs import get_logger
from minielm.services import EmbeddedServices
from minielm.storage import ObjectStore

log = get_logger(__name__)


@dataclass
class DemoContext:
    settings: Settings
    workdir: Path
    store: ObjectStore
    results: dict[str, Any] = field(default_factory=dict)
    echo: Callable[[str], None] = print


@dataclass
class DemoStep:
    name: str
    run: Callable[[DemoContext], None]


def s3_round_trip(ctx: DemoContext) -> None:
    key = f"demo/hello-{uuid.uuid4().hex[:8]}.json"
    ctx.store.put_json(key, {"hello": "minielm"})
    value = ctx.store.get_json(key)
    ctx.echo(f"  wrote and read s3://{ctx.store.bucket}/{key} -> {value}")
    ctx.results["s3_round_trip"] = value


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
    ctx.results["kafka_round_trip"] = {"partition": metadata.partition, "offset": metadata.offset}


def stop_model_server(ctx: DemoContext) -> None:
    stop = ctx.results.pop("serving_stop", None)
    if stop is not None:
        stop()
        ctx.echo(f"  model server at {ctx.results.get('serving_url')} stopped")


def default_steps() -> list[DemoStep]:
    """The loop in order: data, teachers, students, serving, feedback, RL, drift."""
    from minielm.data.demo_step import data_demo_step
    from minielm.distill.demo_step import distill_demo_step
    from minielm.drift.demo_step import drift_demo_step
    from minielm.feedback.demo_step import feedback_demo_step
    from minielm.rl.demo_step import rl_demo_step
    from minielm.teachers.demo_step import teacher_demo_step
    from serving.demo_step import serving_demo_step

    return [
        DemoStep("Embedded services: S3 round trip", s3_round_trip),
        DemoStep("Embedded services: Kafka round trip", kafka_round_trip),
        DemoStep("Data: synthetic catalog, BM25 index, raw vs oracle", data_demo_step),
        DemoStep("Teachers: DeepSpeed fine-tuning of the rewriter and relevance teachers", teacher_demo_step),
        DemoStep("Students: distil the rewriter (KD + KL) and the cross-encoder (Margin-MSE)", distill_demo_step),
        DemoStep("Serving: KServe ModelServer with Feast features, rewrites logged to Kafka", serving_demo_step),
        DemoStep("Feedback: simulated shoppers through Kafka, aggregator windows to S3 and Feast", feedback_demo_step),
        DemoStep("RL retraining: GRPO on feedback + judge rewards, gate, canary, promote", rl_demo_step),
        DemoStep("Drift: Evidently report on the served window vs the reference", drift_demo_step),
        DemoStep("Shut down the model server", stop_model_server),
    ]


@contextmanager
def running_services(settings: Settings, data_dir: Path | None = None) -> Iterator[Settings]:
    """Use the embedded services if they run; otherwise start them (on data_dir) for the duration."""
    services = EmbeddedServices(settings, data_dir=data_dir)
    if all(s.healthy for s in services.status()):
        yield settings
        return
    live = services.start()
    try:
        yield live
    finally:
        services.stop()


def run_demo(
    settings: Settings | None = None, steps: list[DemoStep] | None = None, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    settings = settings or load_settings()
    steps = steps or default_steps()
    workdir = Path(settings.paths.runs_dir) / "demo"
    # Each run starts clean: no checkpoint to resume, no registry or feedback windows from a previous run.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    echo("MiniELM demo: starting the embedded Kafka broker and S3 server")
    with running_services(settings, workdir / "services") as live:
        ctx = DemoContext(settings=live, workdir=workdir, store=ObjectStore(live.s3), echo=echo)
        try:
            for index, step in enumerate(steps, 1):
                echo(f"[{index}/{len(steps)}] {step.name}")
                started = time.monotonic()
                step.run(ctx)
                echo(f"  done in {time.monotonic() - started:.1f} s")
        finally:
            stop_model_server(ctx)
    echo("MiniELM demo finished")
    return ctx.results
