"""``minielm feedback``: help on every command, bad input exits 2 naming the option."""

from __future__ import annotations

from typer.testing import CliRunner

from minielm.cli import app

runner = CliRunner()


def test_every_feedback_command_has_help():
    for command in ("simulate", "aggregate", "replay"):
        result = runner.invoke(app, ["feedback", command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_bad_input_exits_2_naming_the_option(tmp_path):
    result = runner.invoke(app, ["feedback", "replay", "--file", str(tmp_path / "missing.ndjson")])
    assert result.exit_code == 2 and "--file" in result.output
    result = runner.invoke(app, ["feedback", "replay", "--file", str(tmp_path), "--rate", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["feedback", "simulate", "--judge", str(tmp_path / "nope"), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "--judge" in result.output
    result = runner.invoke(app, ["feedback", "aggregate", "--until-idle", "-1"])
    assert result.exit_code == 2 and "--until-idle" in result.output


def test_replay_without_the_esci_sample_names_the_setting(tmp_path):
    missing = "no/such/esci-sample"
    result = runner.invoke(app, ["--set", f"paths.esci_sample_dir={missing}", "feedback", "replay"])
    assert result.exit_code == 2
    assert "paths.esci_sample_dir" in result.output and "ubi_queries_events.ndjson" in result.output


def test_invalid_feedback_setting_names_the_field():
    result = runner.invoke(app, ["--set", "feedback.window_s=0", "feedback", "aggregate", "--help"])
    assert result.exit_code == 2 and "feedback.window_s" in result.output
