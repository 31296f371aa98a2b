"""The end-to-end demo on embedded defaults: each step is a plain function over a DemoContext.

``minielm demo`` starts the embedded services (or reuses running ones), runs the steps in order
with a progress line per step, prints what each did, and stops what it started.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minielm.config import Settings, load_settings
from minielm.demo.artifacts import DemoArtifacts
from minielm.logs import logs_to_file, quiet_third_party_warnings
from minielm.services import running_services
from minielm.storage import ObjectStore

LOG_FILE = "demo.log"  # every structured log line of the run; the console shows the steps' tables


@dataclass
class DemoContext:
    settings: Settings
    workdir: Path
    store: ObjectStore
    artifacts: DemoArtifacts = field(default_factory=DemoArtifacts)
    echo: Callable[[str], None] = print


@dataclass
class DemoStep:
    name: str
    run: Callable[[DemoContext], None]


def stop_model_server(ctx: DemoContext) -> None:
    stop, ctx.artifacts.serving_stop = ctx.artifacts.serving_stop, None
    if stop is not None:
        stop()
        ctx.echo(f"  model server at {ctx.artifacts.serving_url} stopped")


def default_steps() -> list[DemoStep]:
    """The loop in order: data, teachers, students, serving, feedback, RL, drift."""
    from minielm.demo.data_step import data_demo_step
    from minielm.demo.distill_step import distill_demo_step
    from minielm.demo.drift_step import drift_demo_step
    from minielm.demo.feedback_step import feedback_demo_step
    from minielm.demo.rl_step import rl_demo_step
    from minielm.demo.services_step import kafka_round_trip, s3_round_trip
    from minielm.demo.serving_step import serving_demo_step
    from minielm.demo.teachers_step import teacher_demo_step

    return [
        DemoStep("Embedded services: S3 round trip", s3_round_trip),
        DemoStep("Embedded services: Kafka round trip", kafka_round_trip),
        DemoStep("Data: synthetic catalog, BM25 index, raw vs oracle", data_demo_step),
        DemoStep("Teachers: DeepSpeed fine-tuning of the rewriter and relevance teachers", teacher_demo_step),
        DemoStep("Students: distil the rewriter (KD + KL) and the cross-encoder (Margin-MSE)", distill_demo_step),
        DemoStep("Serving: KServe ModelServer with Feast features, rewrites logged to Kafka", serving_demo_step),
        DemoStep("Feedback: simulated shoppers through Kafka, aggregator windows to S3 and Feast", feedback_demo_step),
        DemoStep("RL retraining: DPO or GRPO on feedback + judge rewards, gate, canary, promote", rl_demo_step),
        DemoStep("Drift: Evidently report on the served window vs the reference", drift_demo_step),
        DemoStep("Shut down the model server", stop_model_server),
    ]


def run_demo(
    settings: Settings | None = None, steps: list[DemoStep] | None = None, echo: Callable[[str], None] = print
) -> DemoArtifacts:
    from transformers.utils import logging as transformers_logging

    # Feast's import emits other libraries' deprecation warnings and resets DeprecationWarning to "once";
    # importing it here, inside this block, keeps both out of the run's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import feast  # noqa: F401

    # No per-file load/save bars ("Loading weights") between the tables; the steps' own bars stay.
    transformers_logging.disable_progress_bar()
    settings = settings or load_settings()
    steps = steps or default_steps()
    workdir = Path(settings.paths.runs_dir) / "demo"
    # Each run starts clean: no checkpoint to resume, no registry or feedback windows from a previous run.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    echo(f"MiniELM demo: starting the embedded Kafka broker and S3 server; detailed logs in {workdir / LOG_FILE}")
    # The steps print what a person needs; warnings and info go to the log file, errors still show.
    with (
        logs_to_file(workdir / LOG_FILE, console_level=logging.ERROR),
        running_services(settings, workdir / "services") as live,
    ):
        ctx = DemoContext(settings=live, workdir=workdir, store=ObjectStore(live.s3), echo=echo)
        try:
            for index, step in enumerate(steps, 1):
                echo(f"[{index}/{len(steps)}] {step.name}")
                started = time.monotonic()
                quiet_third_party_warnings()
                step.run(ctx)
                echo(f"  done in {time.monotonic() - started:.1f} s")
        finally:
            stop_model_server(ctx)
    echo("MiniELM demo finished")
    return ctx.artifacts
