"""``minielm config show``: the effective settings after every layer, secrets masked."""

from __future__ import annotations

import json

import typer
import yaml

from minielm.cli.common import settings_from

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


@config_app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML.")) -> None:
    """Print the settings every command would use (defaults < services state < file < env < --set)."""
    data = settings_from(ctx).public_dict()
    typer.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False))


def register(root: typer.Typer) -> None:
    root.add_typer(config_app, name="config")
