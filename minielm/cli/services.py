"""``minielm services up|down|status``: the embedded Kafka broker and S3 server."""

from __future__ import annotations

from pathlib import Path

import typer

from minielm.cli.common import EXIT_FAILURE, settings_from
from minielm.config import load_settings
from minielm.services import EmbeddedServices

services_app = typer.Typer(
    help="Start, check and stop the embedded Kafka (Tansu) and S3 (SeaweedFS) servers.", no_args_is_help=True
)


@services_app.command("up")
def up(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, help="Keep server data here (default <state_dir>/services)."),
) -> None:
    """Start both servers on 127.0.0.1, wait for health, create topics and the bucket."""
    settings = settings_from(ctx)
    live = EmbeddedServices(settings, data_dir).start()
    typer.echo(f"kafka  {live.kafka.bootstrap_servers}  topics: {', '.join(live.kafka.topics.all())}")
    typer.echo(f"s3     {live.s3.endpoint_url}  bucket: {live.s3.bucket}")
    typer.echo(f"endpoints written to {EmbeddedServices(settings).state_file}; every minielm command now uses them")


@services_app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop the servers started by `services up` (SeaweedFS takes ~10 s to stop)."""
    stopped = EmbeddedServices(settings_from(ctx)).stop()
    typer.echo("services stopped" if stopped else "no embedded services were running")


@services_app.command("status")
def status(ctx: typer.Context) -> None:
    """Show each server's endpoint, pid and health; exit 1 when one is not healthy."""
    root = ctx.find_root().obj
    # Re-read so endpoints written since the command started are used.
    settings = load_settings(root.config_file, root.overrides)
    statuses = EmbeddedServices(settings).status()
    for item in statuses:
        typer.echo(item.line())
    if not all(item.healthy for item in statuses):
        raise typer.Exit(EXIT_FAILURE)


def register(root: typer.Typer) -> None:
    root.add_typer(services_app, name="services")
