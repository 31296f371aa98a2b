"""The demo's teacher step: toy-scale fine-tunes of both teachers on the data step's catalog.

Uses the tiny backbone (SmolLM2 learns only tens of steps in the demo's time budget on 2 cores;
``minielm train teacher-rewriter`` defaults to it for real runs), trains through the DeepSpeed
core, evaluates, registers both teachers and leaves their local directories and versions in
``ctx.artifacts`` for the distillation step.
"""

from __future__ import annotations

from pathlib import Path

from minielm.presets import toy_teachers
from minielm.registry import ModelRegistry
from minielm.teachers.config import RelevanceTeacherConfig, RewriterTeacherConfig
from minielm.teachers.publish import register_teacher


def teacher_demo_step(
    ctx, rewriter_config: RewriterTeacherConfig | None = None, relevance_config: RelevanceTeacherConfig | None = None
) -> None:
    """Needs ``dataset_dir`` and ``index_dir``; produces ``teacher_rewriter_dir``,
    ``teacher_rewriter_version``, ``teacher_relevance_dir``, ``teacher_relevance_version`` and
    ``teacher_metrics``. The configs default to the toy presets (tests pass smaller ones)."""
    from minielm.teachers.relevance import train_relevance_teacher
    from minielm.teachers.rewriter import train_rewriter_teacher

    settings = ctx.settings
    registry = ModelRegistry(ctx.store)
    ctx.artifacts.require("dataset_dir", "index_dir", step="teachers")
    data_dir, index_dir = ctx.artifacts.dataset_dir, ctx.artifacts.index_dir
    cache_dir = settings.teachers.models_cache_dir
    toy = toy_teachers(settings.teachers)
    rewriter = train_rewriter_teacher(
        data_dir,
        ctx.workdir / "teachers" / "rewriter",
        rewriter_config or toy.rewriter,
        cache_dir=cache_dir,
        index_dir=index_dir,
        top_k=settings.eval.top_k,
        substitute_is_relevant=settings.eval.substitute_is_relevant,
    )
    rewriter_version = register_teacher(registry, settings.models.teacher_rewriter, rewriter)
    m = rewriter.metrics
    ctx.echo(
        f"  rewriter teacher ({rewriter.metadata['backbone']}, {rewriter.train['steps']} steps, "
        f"loss {rewriter.train['first_loss']:.3f} -> "
        f"{rewriter.train['final_loss']:.3f}, {rewriter.train['train_seconds']:.0f}s): relevant@{m['k']} per query "
        f"raw {m['raw_relevant_per_query']:.3f} / teacher {m['teacher_relevant_per_query']:.3f} / oracle "
        f"{m['oracle_relevant_per_query']:.3f}; exact match {m['exact_match']:.1%} (raw {m['raw_exact_match']:.1%}) "
        f"on {m['n_queries']} {m['split']} queries"
    )
    for example in m["examples"][:3]:
        ctx.echo(f"    {example['query']!r} -> {example['teacher']!r} (oracle {example['oracle']!r})")
    ctx.echo(f"  registered {settings.models.teacher_rewriter} {rewriter_version.version}")

    relevance = train_relevance_teacher(
        data_dir,
        ctx.workdir / "teachers" / "relevance",
        relevance_config or toy.relevance,
        cache_dir=cache_dir,
        top_k=settings.eval.top_k,
    )
    relevance_version = register_teacher(registry, settings.models.teacher_relevance, relevance)
    r = relevance.metrics
    ndcg_key = f"ndcg@{settings.eval.top_k}"
    ctx.echo(
        f"  relevance teacher ({relevance.metadata['backbone']}, {relevance.train['steps']} steps, "
        f"{relevance.train['train_seconds']:.0f}s): "
        f"accuracy {r['accuracy']:.3f} (majority {r['majority_accuracy']:.3f}), macro-F1 {r['macro_f1']:.3f}, "
        f"{ndcg_key} {r[ndcg_key]:.3f} on {r['n_pairs']} {r['split']} pairs"
    )
    ctx.echo(f"  registered {settings.models.teacher_relevance} {relevance_version.version}")
    ctx.artifacts.teacher_rewriter_dir = Path(rewriter.model_dir)
    ctx.artifacts.teacher_rewriter_version = rewriter_version.version
    ctx.artifacts.teacher_relevance_dir = Path(relevance.model_dir)
    ctx.artifacts.teacher_relevance_version = relevance_version.version
    ctx.artifacts.teacher_metrics = {"rewriter": {k: v for k, v in m.items() if k != "examples"}, "relevance": r}
