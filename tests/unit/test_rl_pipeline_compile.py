"""The RL retraining pipeline compiles to exactly the checked-in YAML, with the steps in order."""

from __future__ import annotations

import yaml

from pipelines.registry import compile_pipeline, compiled_path


def test_compiled_yaml_is_up_to_date(tmp_path):
    fresh = compile_pipeline("rl_retraining", tmp_path).read_text()
    checked_in = compiled_path("rl_retraining").read_text()
    assert fresh == checked_in, "run `minielm pipeline compile rl_retraining` and commit the YAML"


def test_pipeline_runs_prepare_train_evaluate_rollout_in_order():
    spec, _platform = yaml.safe_load_all(compiled_path("rl_retraining").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"rl-prepare", "rl-train", "rl-evaluate", "rl-rollout"}
    assert tasks["rl-train"]["dependentTasks"] == ["rl-prepare"]
    assert tasks["rl-evaluate"]["dependentTasks"] == ["rl-prepare", "rl-train"]
    assert set(tasks["rl-rollout"]["dependentTasks"]) == {"rl-prepare", "rl-train", "rl-evaluate"}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "data_uri",
        "index_uri",
        "config_file",
        "judge_uri",
        "run_id",
    }
