"""The demo's teacher step against the embedded S3: trains both tiny teachers, registers them."""

from __future__ import annotations

from pathlib import Path

import pytest

from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.demo import DemoContext
from minielm.demo.artifacts import DemoArtifacts
from minielm.demo.teachers_step import teacher_demo_step
from minielm.models.relevance_teacher import RelevanceTeacher
from minielm.models.rewriter import CausalRewriter
from minielm.registry import ModelRegistry
from minielm.search import SearchIndex
from minielm.teachers.config import TinyBackboneConfig, tiny_relevance_config, tiny_rewriter_config
from minielm.training.config import TrainingConfig

SMALL = TinyBackboneConfig(
    hidden_size=48, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=96, vocab_size=400
)


@pytest.mark.integration
@pytest.mark.slow
def test_teacher_demo_step_trains_and_registers_both(embedded_services, object_store, tmp_path):
    dataset = generate_dataset(n_products=150, n_queries=50, seed=11)
    data_dir = write_esci(dataset, tmp_path / "data")
    index_dir = SearchIndex.build(dataset.products).save(tmp_path / "index")
    lines: list[str] = []
    ctx = DemoContext(
        settings=embedded_services,
        workdir=tmp_path / "work",
        store=object_store,
        artifacts=DemoArtifacts(dataset_dir=Path(data_dir), index_dir=Path(index_dir)),
        echo=lines.append,
    )
    training = TrainingConfig(
        max_steps=4,
        micro_batch_size=16,
        learning_rate=1e-2,
        warmup_steps=1,
        checkpoint_every=0,
        progress=False,
        cpu_threads=1,
    )
    teacher_demo_step(
        ctx,
        tiny_rewriter_config(tiny=SMALL, training=training, max_eval_queries=5),
        tiny_relevance_config(tiny=SMALL, training=training, max_eval_examples=60, max_length=48),
    )

    registry = ModelRegistry(object_store)
    names = embedded_services.models
    rewriter_version = ctx.artifacts.teacher_rewriter_version
    relevance_version = ctx.artifacts.teacher_relevance_version
    assert rewriter_version in registry.versions(names.teacher_rewriter)
    assert relevance_version in registry.versions(names.teacher_relevance)
    entry = registry.get(names.teacher_relevance, relevance_version)
    assert entry.metadata["model_class"] == "minielm.models.relevance_teacher:RelevanceTeacher"
    assert "macro_f1" in entry.metadata["metrics"] and entry.metadata["data_hash"]

    assert CausalRewriter.load(ctx.artifacts.teacher_rewriter_dir).version == rewriter_version
    downloaded = registry.download(names.teacher_relevance, relevance_version, tmp_path / "downloaded")
    teacher = RelevanceTeacher.load(downloaded)
    assert teacher.version == relevance_version and teacher.predict_proba(["red tee"], ["Red T-Shirt"]).shape == (1, 4)
    assert any("relevant@10 per query" in line for line in lines)
    assert any("macro-F1" in line for line in lines)
