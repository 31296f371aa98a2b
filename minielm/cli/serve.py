"""``minielm serve``: the KServe model server on this machine, with the embedded Kafka and S3."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from minielm.cli.common import existing_dir, fail, settings_from


def serve(
    ctx: typer.Context,
    port: int | None = typer.Option(None, help="HTTP port (default serving.http_port; 0 picks a free one)."),
    stage: str | None = typer.Option(None, help="Registry stage to serve: production or candidate."),
    rewriter_path: Path | None = typer.Option(None, help="Serve this local rewriter dir instead of the registry."),
    relevance_path: Path | None = typer.Option(None, help="Serve this local relevance dir instead of the registry."),
    index: Path | None = typer.Option(None, "--index", help="BM25 index for the rewrite-search endpoint."),
    data: Path | None = typer.Option(None, "--data", help="ESCI-layout dataset: product titles and texts."),
    relevance: bool = typer.Option(True, help="Host the relevance model."),
    feast: bool = typer.Option(True, help="Enrich requests with Feast features."),
    apply_features: bool = typer.Option(True, help="Apply the Feast repo before serving."),
    services: bool = typer.Option(True, help="Start the embedded Kafka and S3 unless they already run."),
) -> None:
    """Serve the rewriter, relevance and rewrite-search endpoints (v1 :predict and v2 /infer) until Ctrl-C."""
    from minielm.services import running_services

    settings = settings_from(ctx).model_copy(deep=True)
    try:
        for section, field, value in (
            ("serving", "http_port", port or None),
            ("serving", "model_stage", stage),
            ("serving", "rewriter_path", rewriter_path),
            ("serving", "relevance_path", relevance_path),
            ("serving", "index_dir", index),
            ("serving", "dataset_dir", data),
        ):
            if value is not None:
                setattr(getattr(settings, section), field, value)
        settings.serving.enable_feast = feast
    except ValueError as error:
        raise fail(f"invalid option: {error}") from None
    for option, path in (
        ("--rewriter-path", rewriter_path),
        ("--relevance-path", relevance_path),
        ("--index", index),
        ("--data", data),
    ):
        if path is not None:
            existing_dir(path, option)
    if services:
        with running_services(settings) as live:
            live = live.model_copy(update={"serving": settings.serving, "feast": settings.feast})
            _serve(live, relevance, apply_features, port)
    else:
        _serve(settings, relevance, apply_features, port)


def _serve(settings, relevance: bool, apply_features: bool, port: int | None) -> None:
    from minielm.features.repo import apply_repo
    from serving.app import build_stack, serve_stack

    if apply_features and settings.serving.enable_feast:
        apply_repo(settings)
    stack = build_stack(settings, with_relevance=relevance, with_pipeline=settings.serving.index_dir is not None)
    running = serve_stack(stack, settings, port=port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(
        f"serving {', '.join(m.name for m in stack.models)} at {running.url} "
        f"(v1: {running.url}/v1/models/<name>:predict, v2: {running.url}/v2/models/<name>/infer, "
        f"metrics: {running.url}/metrics); Ctrl-C stops"
    )
    stop.wait()
    running.stop()
    typer.echo("model server stopped")


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
