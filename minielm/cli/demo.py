"""``minielm demo``: the whole loop at toy scale on the embedded services."""

from __future__ import annotations

import typer

from minielm.cli.common import settings_from
from minielm.demo import run_demo


def demo(ctx: typer.Context) -> None:
    """Run the end-to-end demo on embedded defaults (starts and stops its own services)."""
    run_demo(settings_from(ctx), echo=typer.echo)


def register(root: typer.Typer) -> None:
    root.command("demo")(demo)
