"""What every CLI command shares: the settings in the context and the exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from minielm.config import Settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad input: invalid settings, arguments or data


@dataclass
class CliState:
    settings: Settings
    config_file: Path | None
    overrides: list[str]


def settings_from(ctx: typer.Context) -> Settings:
    return ctx.find_root().obj.settings


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print an error naming what was wrong and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
