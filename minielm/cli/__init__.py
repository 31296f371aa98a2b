"""The ``minielm`` command line.

Each module in this package adds its commands through ``register(root)``, so a stage's CLI lives
beside nothing but itself. Global options (``--config``, ``--set``) build the one typed settings
object that every command reads through :func:`minielm.cli.common.settings_from`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import typer

from minielm.cli.common import CliState, MinielmErrorsToExitCodes
from minielm.config import load_settings
from minielm.logs import configure_logging

app = typer.Typer(
    name="minielm",
    help="MiniELM: train, serve and keep improving an e-commerce query rewriter and its relevance model.",
    no_args_is_help=True,
    cls=MinielmErrorsToExitCodes,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (or $MINIELM_CONFIG)."),
    set_: list[str] = typer.Option([], "--set", help="Override one setting: section.field=value (repeatable)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    configure_logging(log_level)
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
    app()
