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


def test_distill_demo_step_gates_the_weak_rewriter_and_promotes_the_relevance_student(embedded_services, tmp_path):
    """Tiny models trained for seconds: the rewriter cannot beat the phrase-table baseline, so its gate
    (never widened here) fails and it is not registered; the relevance student passes its own gate."""
    from minielm.demo.distill_step import distill_demo_step

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = embedded_services.model_copy(deep=True)
        suffix = uuid.uuid4().hex[:6]
        settings.models.student_rewriter = f"student-rewriter-{suffix}"
        settings.models.student_relevance = f"student-relevance-{suffix}"
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
    for system in ("raw", "baseline", "oracle", "teacher", "student"):
        assert f"  {system}" in output
    assert "of the teacher's gain over raw" in output and "quality gate FAILED" in output
    gate = ctx.artifacts.distill_gate
    assert not gate["rewriter"]["passed"] and gate["relevance"]["passed"]
    assert any("does not beat baseline" in r or "max_harm_rate" in r for r in gate["rewriter"]["reasons"])
    registry = ModelRegistry(ctx.store)
    # The gated student is not registered; the baseline it failed to beat serves instead.
    assert ctx.artifacts.student_rewriter_version is None
    serving = registry.stage(settings.models.student_rewriter, "production")
    assert serving is not None and serving.metadata["role"] == "baseline-rewriter"
    assert registry.versions(settings.models.student_rewriter) == [serving.version]
    assert "registered the phrase-table baseline" in output
    production = registry.stage(settings.models.student_relevance, "production")
    assert production is not None and production.version == ctx.artifacts.student_relevance_version
    assert "gate" in production.metadata
    from minielm.models.cross_encoder import CrossEncoderScorer
    from minielm.models.rewriter import CausalRewriter

    assert CausalRewriter.load(ctx.artifacts.student_rewriter_dir).rewrite(["blk shoes"])[0][0]
    assert CrossEncoderScorer.load(ctx.artifacts.student_relevance_dir).score(["a"], ["b"]).shape == (1,)
