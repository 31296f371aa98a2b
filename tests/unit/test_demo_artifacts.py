"""Demo steps hand typed artifacts to each other and name what is missing when a step did not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from minielm.config import Settings
from minielm.demo import DemoContext
from minielm.demo.artifacts import DemoArtifacts, MissingArtifactError


def test_require_names_every_missing_artifact_and_its_producer():
    artifacts = DemoArtifacts(dataset_dir=Path("data"))
    artifacts.require("dataset_dir", step="serving")
    with pytest.raises(MissingArtifactError) as error:
        artifacts.require("dataset_dir", "index_dir", "teacher_rewriter_dir", step="distillation")
    message = str(error.value)
    assert message.startswith("the distillation step needs index_dir (from the data step)")
    assert "teacher_rewriter_dir (from the teachers step)" in message and "dataset_dir" not in message


def test_require_rejects_a_name_that_is_not_an_artifact():
    with pytest.raises(AttributeError, match="no_such_thing"):
        DemoArtifacts().require("no_such_thing", step="data")


def test_produced_lists_only_what_exists_and_never_the_stop_handle():
    artifacts = DemoArtifacts(serving_url="http://127.0.0.1:1", serving_stop=lambda: None)
    assert artifacts.produced() == {"serving_url": "http://127.0.0.1:1"}


@pytest.mark.parametrize(
    "module, function",
    [
        ("teachers_step", "teacher_demo_step"),
        ("distill_step", "distill_demo_step"),
        ("serving_step", "serving_demo_step"),
        ("feedback_step", "feedback_demo_step"),
        ("rl_step", "rl_demo_step"),
        ("drift_step", "drift_demo_step"),
    ],
)
def test_a_step_without_the_data_step_fails_naming_the_dataset(module, function, tmp_path):
    import importlib

    step = getattr(importlib.import_module(f"minielm.demo.{module}"), function)
    ctx = DemoContext(settings=Settings(), workdir=tmp_path, store=None, echo=lambda line: None)
    with pytest.raises(MissingArtifactError, match=r"dataset_dir \(from the data step\)"):
        step(ctx)
