"""``minielm feedback simulate|aggregate|replay``: shopper feedback through Kafka into S3 windows and Feast."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from minielm.cli.common import (
    OutputFormat,
    OutputFormatOption,
    emit,
    existing_dir,
    fail,
    find_esci_sample,
    settings_from,
)

feedback_app = typer.Typer(
    help="Simulated or replayed shopper feedback, and the aggregator that turns it into "
    "reward windows on S3 and query features in Feast.",
    no_args_is_help=True,
)


def load_judge(judge_dir: Path):
    """The relevance judge the simulated shoppers use (a saved cross-encoder student or compatible)."""
    from minielm.models.cross_encoder import CrossEncoderScorer

    return CrossEncoderScorer.load(judge_dir)


@feedback_app.command("simulate")
def simulate(
    ctx: typer.Context,
    judge: Path = typer.Option(..., "--judge", help="Saved relevance model (cross-encoder) that judges the products."),
    data: Path | None = typer.Option(
        None, "--data", help="ESCI-layout dataset (queries and product texts); default paths.data_dir."
    ),
    index: Path | None = typer.Option(
        None, "--index", help="Saved BM25 index (drive mode); default serving.index_dir."
    ),
    rewriter: Path | None = typer.Option(
        None, "--rewriter", help="Saved rewriter; without it the raw query is served."
    ),
    sessions: int = typer.Option(200, min=1, help="Shopper sessions to simulate."),
    rate: float | None = typer.Option(None, help="Sessions per second (default feedback.sim_rate_per_s)."),
    respond: bool = typer.Option(
        False, help="Do not drive traffic: react to the served rewrites that serving logs on the rewrites topic."
    ),
    group: str = typer.Option("minielm-shoppers", help="Consumer group of --respond."),
    split: str | None = typer.Option(None, help="Only queries of this split (train, validation, test)."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Simulated shoppers: a relevance judge scores the served products, a position-biased click model makes
    impressions, clicks, add-to-carts, purchases and reformulations, all sent to Kafka."""
    from minielm.data.esci import load_esci
    from minielm.feedback.simulator import (
        ShopperSimulator,
        drive_traffic,
        respond_to_served,
        traffic_rewriter,
    )

    settings = settings_from(ctx)
    if rate is not None:
        if rate <= 0:
            raise fail(f"--rate: expected a positive number of sessions per second, got {rate}")
        settings.feedback.sim_rate_per_s = rate
    data_dir = existing_dir(data or settings.paths.data_dir, "--data")
    judge_model = load_judge(existing_dir(judge, "--judge"))
    dataset = load_esci(data_dir, split=split)
    simulator = ShopperSimulator.for_dataset(judge_model, dataset, settings.feedback, seed=settings.seed)
    with tqdm(total=sessions, desc="shopper sessions", unit="session") as bar:
        if respond:
            report = respond_to_served(settings, simulator, group_id=group, max_sessions=sessions, progress=bar.update)
        else:
            from minielm.search import SearchIndex

            search_index = SearchIndex.load(existing_dir(index or settings.serving.index_dir, "--index"))
            rewrite, name, version = traffic_rewriter(existing_dir(rewriter, "--rewriter") if rewriter else None)
            queries = sorted(set(dataset.examples["query"]))
            report = drive_traffic(
                settings, simulator, queries, rewrite, search_index.search, sessions, name, version, progress=bar.update
            )
    emit(report.summary(), output_format)


@feedback_app.command("aggregate")
def aggregate(
    ctx: typer.Context,
    group: str | None = typer.Option(None, help="Consumer group (default kafka.consumer_group)."),
    until_idle: float | None = typer.Option(None, help="Stop after this many seconds without new events."),
    max_seconds: float | None = typer.Option(None, help="Stop after this many seconds."),
    feast: bool = typer.Option(True, help="Push query statistics to Feast (feedback.push_to_feast)."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Join served rewrites with feedback, write reward windows to S3 (offsets committed only after the
    write), send invalid events to the dead-letter topic and push query statistics to Feast. Runs until
    stopped (Ctrl-C / SIGTERM drain the open windows first) unless --until-idle or --max-seconds."""
    import signal

    from minielm.feedback.aggregator import Aggregator

    settings = settings_from(ctx)
    if until_idle is not None and until_idle <= 0:
        raise fail(f"--until-idle: expected a positive number of seconds, got {until_idle}")
    settings.feedback.push_to_feast = feast and settings.feedback.push_to_feast
    aggregator = Aggregator(settings, group_id=group)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: aggregator.stop())
    bar = tqdm(desc="events", unit="event")

    def progress(stats) -> None:
        bar.update(stats.consumed - bar.n)
        bar.set_postfix(windows=stats.windows_written, dlq=stats.dead_letters, refresh=False)

    try:
        stats = aggregator.run(until_idle_s=until_idle, max_seconds=max_seconds, on_progress=progress)
    finally:
        bar.close()
    emit({k: v for k, v in vars(stats).items() if k != "window_keys"}, output_format)


@feedback_app.command("replay")
def replay(
    ctx: typer.Context,
    file: Path | None = typer.Option(
        None, "--file", help="UBI NDJSON log (default <paths.esci_sample_dir>/ubi_queries_events.ndjson)."
    ),
    rate: float | None = typer.Option(None, help="Requests per second (default: as fast as possible)."),
    retime: bool = typer.Option(True, help="Shift timestamps so the newest event is now."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Send real User Behavior Insights events (queries, impressions, clicks, add-to-carts, purchases) to the
    topics as served rewrites and feedback events."""
    from minielm.data.esci import EsciFormatError
    from minielm.feedback.simulator import replay_ubi

    settings = settings_from(ctx)
    if file is not None and not file.is_file():
        raise fail(f"--file: expected a UBI NDJSON file, {file} does not exist")
    path = file or find_esci_sample(settings, "ubi_queries_events.ndjson")
    if rate is not None and rate <= 0:
        raise fail(f"--rate: expected a positive number of requests per second, got {rate}")
    with tqdm(desc="requests", unit="request") as bar:
        try:
            summary = replay_ubi(settings, path, rate_per_s=rate, retime=retime, progress=bar.update)
        except EsciFormatError as error:
            raise fail(f"--file: {error}") from None
    emit(summary, output_format)


def register(root: typer.Typer) -> None:
    root.add_typer(feedback_app, name="feedback")
