"""The CLI shell: help on every command, exit code 2 for bad settings, config show."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from minielm.cli import app

runner = CliRunner()


def _all_commands(group, prefix=()):
    for name, command in group.commands.items():
        path = prefix + (name,)
        yield path
        if hasattr(command, "commands"):
            yield from _all_commands(command, path)


def test_every_command_has_help():
    root = typer.main.get_command(app)
    paths = list(_all_commands(root))
    assert ("services", "up") in paths and ("config", "show") in paths and ("demo",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_invalid_setting_exits_2_and_names_the_field(tmp_path):
    result = runner.invoke(
        app, ["--set", "kafka.partitions=-1", "--set", f"paths.state_dir={tmp_path}", "config", "show"]
    )
    assert result.exit_code == 2
    assert "kafka.partitions" in result.output


def test_config_show_prints_effective_values_with_secrets_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "topsecret")
    result = runner.invoke(
        app, ["--set", "kafka.partitions=4", "--set", f"paths.state_dir={tmp_path}", "config", "show", "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    assert '"partitions": 4' in result.output
    assert "topsecret" not in result.output


def test_unknown_pipeline_exits_2():
    result = runner.invoke(app, ["pipeline", "run", "no-such-pipeline"])
    assert result.exit_code == 2
    assert "unknown pipeline" in result.output
