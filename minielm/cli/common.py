"""What every CLI command shares: the settings in the context, the exit codes, the mapping of errors to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from typer.core import TyperGroup

from minielm.config import Settings
from minielm.errors import InputError, MinielmError, ServiceError

EXIT_OK = 0
EXIT_FAILURE = ServiceError.exit_code  # the environment failed (or a bug)
EXIT_USAGE = InputError.exit_code  # bad input: invalid settings, arguments or data


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


def existing_dir(path: Path | None, option: str) -> Path:
    """``path`` if it is a directory; else exit 2 naming the option."""
    if path is None or not Path(path).is_dir():
        raise fail(f"{option}: expected an existing directory, got {path}")
    return Path(path)


class MinielmErrorsToExitCodes(TyperGroup):
    """The root command: a :class:`MinielmError` from the settings or any command ends in one ``error:``
    line and its branch's exit code (input 2, environment 1), so no command catches them one by one."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MinielmError as error:
            raise fail(str(error), error.exit_code) from None
