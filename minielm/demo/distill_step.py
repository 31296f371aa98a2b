"""Demo step: distil both teachers into the students production serves, at toy scale.

Needs ``dataset_dir`` and ``index_dir`` (data step), ``teacher_rewriter_dir`` and
``teacher_relevance_dir`` (teacher step). Produces ``student_rewriter_dir``, ``student_relevance_dir``,
``student_rewriter_version``, ``student_relevance_version``, ``distill_report`` and ``distill_gate``.
"""

from __future__ import annotations

import json
from pathlib import Path

from minielm.presets import toy_distill

DEMO_EVAL_QUERIES = 500
DEMO_EVAL_PAIRS = 600


def distill_demo_step(ctx) -> None:
    from minielm.distill.stages import (
        distill_relevance_student,
        distill_rewriter_student,
        evaluate_students,
        gate_students,
        label_augmented_pairs,
        production_rewriter_metrics,
        register_baseline_rewriter,
        register_students,
    )
    from minielm.registry import ModelRegistry

    ctx.artifacts.require(
        "dataset_dir", "index_dir", "teacher_rewriter_dir", "teacher_relevance_dir", step="distillation"
    )
    settings = ctx.settings
    config = toy_distill(settings.distill)
    workdir = Path(ctx.workdir) / "distill"
    a = ctx.artifacts

    labelled = label_augmented_pairs(
        a.dataset_dir, a.index_dir, a.teacher_relevance_dir, workdir / "triples", config, seed=settings.seed
    )
    ctx.echo(
        f"  teacher labelled {labelled['n_triples']} augmented triples from {labelled['n_queries']} queries "
        f"{labelled['by_source']} (mean margin {labelled['mean_margin']:.3f})"
    )
    relevance = distill_relevance_student(
        a.dataset_dir,
        labelled["triples_path"],
        workdir / "relevance",
        config,
        seed=settings.seed,
        teacher_relevance_dir=a.teacher_relevance_dir,
    )
    ctx.echo(
        f"  relevance student: {relevance['steps']} Margin-MSE steps, loss {relevance['first_loss']} -> "
        f"{relevance['final_loss']} ({relevance['train_seconds']} s)"
        + (
            f"; gold labels mixed in (gold_mix_weight {config.relevance.gold_mix_weight}): student vs teacher below is "
            "not a pure distillation result (benchmarks/relevance_distill.py measures that, without gold labels)"
            if config.relevance.gold_mix_weight > 0
            else "; no gold labels"
        )
    )
    rewriter = distill_rewriter_student(
        a.dataset_dir,
        a.teacher_rewriter_dir,
        workdir / "rewriter",
        config,
        seed=settings.seed,
        index_dir=a.index_dir,
        eval_config=settings.eval,
    )
    ctx.echo(
        f"  rewriter student: {rewriter['parameters']:,} params vs teacher {rewriter['teacher_parameters']:,} "
        f"(teacher layers {rewriter['layer_map']}), loss {rewriter['first_loss']} -> {rewriter['final_loss']} "
        f"({rewriter['train_seconds']} s), rewrites when confidence >= {rewriter['min_confidence']:.3f}"
    )

    report = evaluate_students(
        a.dataset_dir,
        a.index_dir,
        a.teacher_rewriter_dir,
        rewriter["model_dir"],
        a.teacher_relevance_dir,
        relevance["model_dir"],
        settings.eval,
        settings.serving,
        max_queries=DEMO_EVAL_QUERIES,
        max_pairs=DEMO_EVAL_PAIRS,
        seed=settings.seed,
    )
    for line in report["table"].splitlines():
        ctx.echo(f"  {line}")
    registry = ModelRegistry(ctx.store)
    production = production_rewriter_metrics(registry, settings.models.student_rewriter)
    gate = gate_students(report, production, settings.gate, config)
    ctx.echo(f"  quality gate {'PASSED' if gate['passed'] else 'FAILED'}: " + "; ".join(gate["reasons"]))
    stage = "production" if production is None and config.promote_to_production_when_none else "candidate"
    registered = register_students(
        settings,
        ctx.store,
        rewriter["model_dir"],
        relevance["model_dir"],
        report,
        gate,
        stage=stage,
        extra_metadata={"source": "demo"},
    )
    for name, key in (
        (settings.models.student_rewriter, "student_rewriter_version"),
        (settings.models.student_relevance, "student_relevance_version"),
    ):
        if registered[key]:
            ctx.echo(f"  registered {name} {registered[key]} as {stage}")
        else:
            ctx.echo(f"  {name} not registered: its gate failed")
    if not registered["student_rewriter_version"] and production is None:
        version = register_baseline_rewriter(
            settings,
            ctx.store,
            a.dataset_dir,
            workdir / "baseline",
            report,
            reason="no learned rewriter passed its gate; the phrase-table baseline serves",
        )
        ctx.echo(
            f"  no learned rewriter beat the baseline: registered the phrase-table baseline as "
            f"{settings.models.student_rewriter} {version} (production); a student replaces it once it passes the gate"
        )
    (workdir / "distill_report.json").write_text(
        json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2, default=str)
    )
    a.student_rewriter_dir = Path(rewriter["model_dir"])
    a.student_relevance_dir = Path(relevance["model_dir"])
    a.student_rewriter_version = registered.get("student_rewriter_version")
    a.student_relevance_version = registered.get("student_relevance_version")
    a.distill_report = {k: v for k, v in report.items() if k != "table"}
    a.distill_gate = gate
