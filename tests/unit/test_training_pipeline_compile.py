"""The training pipeline compiles to exactly the checked-in YAML, with its steps in dependency order."""

from __future__ import annotations

import yaml

from pipelines.registry import compile_pipeline, compiled_path


def test_compiled_yaml_is_up_to_date(tmp_path):
    fresh = compile_pipeline("training", tmp_path).read_text()
    assert fresh == compile_pipeline("training", tmp_path / "again").read_text()
    assert fresh == compiled_path("training").read_text(), "run `minielm pipeline compile training` and commit the YAML"


def test_pipeline_orders_teachers_labels_students_evaluation_gate_and_registration():
    spec, _platform = yaml.safe_load_all(compiled_path("training").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps["validate-data"] == set()
    assert deps["fine-tune-rewriter-teacher"] == {"validate-data"}
    assert deps["fine-tune-relevance-teacher"] == {"validate-data"}
    assert deps["label-augmented-pairs"] == {"validate-data", "fine-tune-relevance-teacher"}
    # the teacher too: distill.relevance.teacher_layers starts the student from it
    assert deps["distill-relevance"] == {"validate-data", "label-augmented-pairs", "fine-tune-relevance-teacher"}
    assert deps["distill-rewriter"] == {"validate-data", "fine-tune-rewriter-teacher"}
    assert deps["evaluate-students"] == {
        "validate-data",
        "fine-tune-rewriter-teacher",
        "fine-tune-relevance-teacher",
        "distill-rewriter",
        "distill-relevance",
    }
    assert deps["quality-gate"] == {"evaluate-students"}
    assert deps["register-candidates"] == {"quality-gate", "evaluate-students", "distill-rewriter", "distill-relevance"}
    # The gate and the registration read the registry's current state: never cached.
    assert tasks["quality-gate"]["cachingOptions"] == {}
    assert tasks["register-candidates"]["cachingOptions"] == {}
    assert tasks["distill-rewriter"]["cachingOptions"] == {"enableCache": True}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {
        "data_uri",
        "index_uri",
        "config_file",
        "preset",
        "rewriter_teacher_overrides",
        "relevance_teacher_overrides",
        "run_id",
    }
    # A cluster run gets the configured budgets unless it names a preset (no toy flag on the components).
    assert params["preset"]["defaultValue"] == ""
    for component in spec["components"].values():
        assert "toy" not in component.get("inputDefinitions", {}).get("parameters", {})
