"""The teacher KFP components under kfp.local, and the stage config they resolve.

No ``from __future__ import annotations``: KFP reads the pipeline's real annotation objects.
"""

import json

import pytest

from minielm.config import ConfigError, load_settings
from minielm.teachers.stages import teacher_config

TOY_OVERRIDES = {
    "tiny": {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 4,
        "num_kv_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 400,
    },
    "training": {"max_steps": 3, "warmup_steps": 1, "micro_batch_size": 8, "checkpoint_every": 0, "progress": False},
}


def test_stage_config_merges_overrides_and_names_bad_fields():
    settings = load_settings(environ={}, use_services_state=False)
    config = teacher_config(settings, "rewriter", toy=True, overrides=json.dumps(TOY_OVERRIDES))
    assert config.backbone == "tiny" and config.training.max_steps == 3 and config.training.cpu_threads == 1
    assert teacher_config(settings, "relevance").backbone == "smollm2"
    with pytest.raises(ConfigError, match=r"teachers.relevance:\s+training.zero_stage"):
        teacher_config(settings, "relevance", overrides={"training": {"zero_stage": 7}})
    with pytest.raises(ConfigError, match="not valid JSON"):
        teacher_config(settings, "rewriter", overrides="{oops")


@pytest.mark.slow
def test_components_run_with_kfp_local(tmp_path):
    from kfp import dsl, local
    from kfp.dsl import Artifact, Dataset

    from components.teachers import fine_tune_relevance_teacher, fine_tune_rewriter_teacher
    from minielm.data.esci import write_esci
    from minielm.data.synthetic import generate_dataset

    data_dir = write_esci(generate_dataset(n_products=120, n_queries=40, seed=5), tmp_path / "data")
    no_index = tmp_path / "no-index"
    no_index.mkdir()
    overrides = json.dumps(TOY_OVERRIDES)

    @dsl.pipeline(name="teachers-test")
    def both_teachers(data_uri: str, index_uri: str) -> float:
        data = dsl.importer(artifact_uri=data_uri, artifact_class=Dataset, reimport=False)
        index = dsl.importer(
            artifact_uri=index_uri, artifact_class=Artifact, reimport=False, metadata={"present": False}
        )
        fine_tune_rewriter_teacher(data=data.output, index=index.output, preset="toy", overrides=overrides)
        return fine_tune_relevance_teacher(data=data.output, preset="toy", overrides=overrides).outputs["Output"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = both_teachers(data_uri=str(data_dir), index_uri=str(no_index))
    assert 0.0 <= task.output <= 1.0
    exports = sorted(p.parent for p in (tmp_path / "root").rglob("final/config.json"))
    assert len(exports) == 2
    roles = {json.loads((p / "metadata.json").read_text())["role"] for p in exports}
    assert roles == {"teacher-rewriter", "teacher-relevance"}
