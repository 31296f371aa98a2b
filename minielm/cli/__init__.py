"""The ``minielm`` command line.

Each module in this package adds its commands through ``register(root)``, so a stage's CLI lives
beside nothing but itself. Global options (``--config``, ``--set``) build the one typed settings
object that every command reads through :func:`minielm.cli.common.settings_from`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from typer._click.exceptions import NoArgsIsHelpError

from minielm.cli.common import EXIT_FAILURE, CliState, MinielmErrorsToExitCodes
from minielm.config import load_settings
from minielm.logs import configure_logging, quiet_third_party_warnings


class OneLineErrorsGroup(MinielmErrorsToExitCodes):
    """Also a bad option, value or command ends in one ``error:`` line and exit 2, not a usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as error:
            error.show()
            sys.exit(error.exit_code)
        except typer.TyperException as error:
            context = getattr(error, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            typer.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(EXIT_FAILURE)
        sys.exit(result if isinstance(result, int) else 0)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


app = typer.Typer(
    name="minielm",
    cls=OneLineErrorsGroup,
    help="MiniELM: train, serve and keep improving an e-commerce query rewriter and its relevance model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (or $MINIELM_CONFIG)."),
    set_: list[str] = typer.Option([], "--set", help="Override one setting: section.field=value (repeatable)."),
    log_level: LogLevel = typer.Option(
        LogLevel.info, "--log-level", envvar="MINIELM_LOG_LEVEL", case_sensitive=False, help="Log level."
    ),
) -> None:
    configure_logging(log_level.value)
    ctx.obj = CliState(settings=load_settings(config, set_), config_file=config, overrides=list(set_))


def _register_commands() -> None:
    package = sys.modules[__name__]
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_") or module_info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    quiet_third_party_warnings()
    app()
