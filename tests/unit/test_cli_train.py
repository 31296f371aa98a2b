"""``minielm train teacher-*``: bad settings and bad data exit 2 naming the problem, before training."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from minielm.cli import app
from minielm.data.esci import EXAMPLES_FILE, write_esci
from minielm.data.synthetic import generate_dataset

runner = CliRunner()


def invoke(tmp_path, *args: str):
    return runner.invoke(
        app, ["--set", f"paths.state_dir={tmp_path}", "--set", f"paths.runs_dir={tmp_path}/runs", *args]
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_esci(generate_dataset(n_products=80, n_queries=30, seed=2), tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("command", ["teacher-rewriter", "teacher-relevance"])
def test_bad_options_and_settings_exit_2_naming_the_field(tmp_path, data_dir, command):
    result = invoke(tmp_path, "train", command, "--data", str(data_dir), "--zero-stage", "4")
    assert result.exit_code == 2 and "zero_stage" in result.output
    result = invoke(tmp_path, "train", command, "--data", str(data_dir), "--backbone", "gpt9")
    assert result.exit_code == 2 and "backbone" in result.output
    result = invoke(tmp_path, "train", command, "--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "--data" in result.output
    assert not (tmp_path / "runs").exists()


def test_bad_labels_exit_2_before_training(tmp_path, data_dir):
    import pandas as pd

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for path in data_dir.iterdir():
        (bad_dir / path.name).write_bytes(path.read_bytes())
    examples = pd.read_parquet(bad_dir / EXAMPLES_FILE)
    examples.loc[3, "esci_label"] = "Q"
    examples.to_parquet(bad_dir / EXAMPLES_FILE, index=False)
    result = invoke(tmp_path, "train", "teacher-relevance", "--data", str(bad_dir), "--backbone", "tiny")
    assert result.exit_code == 2 and "esci_label" in result.output and "'Q'" in result.output
    assert not (tmp_path / "runs").exists()
