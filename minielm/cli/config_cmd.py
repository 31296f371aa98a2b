"""``minielm config show``: the effective settings after every layer, secrets masked."""

from __future__ import annotations

import typer

from minielm.cli.common import OutputFormat, OutputFormatOption, emit, settings_from

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


@config_app.command("show")
def show(ctx: typer.Context, output_format: OutputFormatOption = OutputFormat.text) -> None:
    """Print the settings every command would use (defaults < services state < file < env < --set); text is YAML."""
    emit(settings_from(ctx).public_dict(), output_format)


def register(root: typer.Typer) -> None:
    root.add_typer(config_app, name="config")
