"""The distillation demo step on a small synthetic catalog with tiny teachers, against the real S3."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch

from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.demo import DemoContext
from minielm.demo.artifacts import DemoArtifacts
from minielm.registry import ModelRegistry
from minielm.search import SearchIndex
from minielm.storage import ObjectStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tiny_teachers(dataset_dir, index_dir, out):
    from minielm.teachers.config import tiny_relevance_config, tiny_rewriter_config
    from minielm.teachers.relevance import train_relevance_teacher
    from minielm.teachers.rewriter import train_rewriter_teacher

    rewriter_cfg = tiny_rewriter_config(max_eval_queries=20)
    rewriter_cfg.training = rewriter_cfg.training.model_copy(update={"max_steps": 150, "progress": False})
    relevance_cfg = tiny_relevance_config(max_eval_examples=200)
    relevance_cfg.training = relevance_cfg.training.model_copy(update={"max_steps": 60, "progress": False})
    rewriter = train_rewriter_teacher(dataset_dir, out / "teacher-rewriter", rewriter_cfg, index_dir=index_dir)
    relevance = train_relevance_teacher(dataset_dir, out / "teacher-relevance", relevance_cfg)
    return str(rewriter.model_dir), str(relevance.model_dir)


def test_distill_demo_step_registers_students_and_promotes_the_first(embedded_services, tmp_path):
    from minielm.demo.distill_step import distill_demo_step

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = embedded_services.model_copy(deep=True)
        suffix = uuid.uuid4().hex[:6]
        settings.models.student_rewriter = f"student-rewriter-{suffix}"
        settings.models.student_relevance = f"student-relevance-{suffix}"
        settings.gate.min_gain_over_raw = -100.0  # tiny models trained for seconds: the test checks the plumbing
        settings.distill.relevance.max_ndcg_gap = 1.0
        dataset = generate_dataset(n_products=300, n_queries=80, seed=3)
        dataset_dir = str(write_esci(dataset, tmp_path / "data"))
        index_dir = str(SearchIndex.build(dataset.products).save(tmp_path / "index"))
        teacher_rewriter_dir, teacher_relevance_dir = tiny_teachers(dataset_dir, index_dir, tmp_path)
        lines: list[str] = []
        ctx = DemoContext(settings=settings, workdir=tmp_path, store=ObjectStore(settings.s3), echo=lines.append)
        ctx.artifacts = DemoArtifacts(
            dataset_dir=Path(dataset_dir),
            index_dir=Path(index_dir),
            teacher_rewriter_dir=Path(teacher_rewriter_dir),
            teacher_relevance_dir=Path(teacher_relevance_dir),
        )
        distill_demo_step(ctx)
    finally:
        torch.set_num_threads(threads)
    output = "\n".join(lines)
    for system in ("raw", "oracle", "teacher", "student"):
        assert f"  {system}" in output
    assert "of the teacher's gain over raw" in output and "quality gate PASSED" in output
    registry = ModelRegistry(ctx.store)
    for name, key in (
        (settings.models.student_rewriter, "student_rewriter_version"),
        (settings.models.student_relevance, "student_relevance_version"),
    ):
        production = registry.stage(name, "production")
        assert production is not None and production.version == getattr(ctx.artifacts, key)
        assert "gate" in production.metadata
    from minielm.models.cross_encoder import CrossEncoderScorer
    from minielm.models.rewriter import CausalRewriter

    assert CausalRewriter.load(ctx.artifacts.student_rewriter_dir).rewrite(["blk shoes"])[0][0]
    assert CrossEncoderScorer.load(ctx.artifacts.student_relevance_dir).score(["a"], ["b"]).shape == (1,)
