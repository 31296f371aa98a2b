"""``minielm rl``: help on every command, KServe patches printed, bad input exits 2 naming the option."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from minielm.cli import app

runner = CliRunner()

ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "student-rewriter"},
    "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "x", "env": []}]}},
}


def test_help_lists_the_commands():
    result = runner.invoke(app, ["rl", "--help"])
    assert result.exit_code == 0
    for command in ("train", "status", "kserve-patch"):
        assert command in result.output


@pytest.mark.parametrize("output_format, parse", [("text", yaml.safe_load), ("json", json.loads)])
def test_kserve_patch_prints_the_canary_patch_with_the_configured_percent(tmp_path, output_format, parse):
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(ISVC))
    result = runner.invoke(
        app,
        [
            "--set",
            "rl.canary_traffic_percent=25",
            "rl",
            "kserve-patch",
            "canary",
            "--isvc-file",
            str(path),
            "--version",
            "v9",
            "-o",
            output_format,
        ],
    )
    assert result.exit_code == 0, result.output
    assert parse(result.stdout)["spec"]["predictor"]["canaryTrafficPercent"] == 25


def test_bad_input_exits_2_naming_the_option(tmp_path):
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump({"kind": "Deployment"}))
    result = runner.invoke(app, ["rl", "kserve-patch", "canary", "--isvc-file", str(path), "--version", "v1"])
    assert result.exit_code == 2 and "--isvc-file" in result.output
    path.write_text(yaml.safe_dump(ISVC))
    result = runner.invoke(app, ["rl", "kserve-patch", "canary", "--isvc-file", str(path)])
    assert result.exit_code == 2 and "--version" in result.output
    result = runner.invoke(app, ["rl", "train", "--data", str(tmp_path / "nope"), "--index", str(tmp_path)])
    assert result.exit_code == 2 and "--data" in result.output
