"""What every CLI command shares: the settings in the context, the exit codes, the mapping of errors to them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
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
    line and its branch's exit code (input 2, environment 1), so no command catches them one by one.
    An S3 request that failed for good (unreachable, refused, no credentials) is an environment error."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MinielmError as error:
            raise fail(str(error), error.exit_code) from None
        except Exception as error:
            if not type(error).__module__.startswith("botocore."):
                raise
            state = ctx.find_root().obj
            endpoint = (state.settings.s3.endpoint_url or "AWS") if isinstance(state, CliState) else "S3"
            raise fail(f"S3 request to {endpoint} failed: {type(error).__name__}: {error}", EXIT_FAILURE) from None


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


# Every command that prints a result takes ``-o/--output-format``: text for people, json for scripts.
OutputFormatOption = Annotated[
    OutputFormat,
    typer.Option("--output-format", "-o", case_sensitive=False, help="text (readable) or json (for scripts)."),
]


def emit(result: Any, output_format: OutputFormat, text: str | None = None) -> None:
    """Print a command's result: ``text`` (default: the result as YAML) or the result as JSON."""
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(result, indent=2, default=str))
    elif text is not None:
        typer.echo(text)
    else:
        plain = json.loads(json.dumps(result, default=str))
        typer.echo(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=120).rstrip())


REPO_ROOT = Path(__file__).resolve().parents[2]


def find_esci_sample(settings: Settings, file: str | None = None) -> Path:
    """``paths.esci_sample_dir`` (or one ``file`` in it): relative to the working dir, else to the repository.

    The real ESCI sample is not part of the repository; when neither place has it the command fails
    naming the setting and how to set it.
    """
    configured = Path(settings.paths.esci_sample_dir)
    candidates = [configured] if configured.is_absolute() else [configured, REPO_ROOT / configured]
    for directory in candidates:
        target = directory / file if file else directory
        if target.exists():
            return target
    what = f"{file} in " if file else ""
    raise fail(
        f"paths.esci_sample_dir: no {what}{configured} (looked in {' and '.join(str(c) for c in candidates)}); "
        "the real ESCI sample ships beside the repository, not in it: point the setting at your copy with "
        "--set paths.esci_sample_dir=DIR or MINIELM_PATHS__ESCI_SAMPLE_DIR=DIR"
    )
