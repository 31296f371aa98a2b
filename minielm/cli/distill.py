"""``minielm distill rewriter|relevance|evaluate``: the students that production serves."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from minielm.cli.common import OutputFormat, OutputFormatOption, emit, existing_dir, settings_from

distill_app = typer.Typer(help="Distil the teachers into the small students production serves.", no_args_is_help=True)

DATA_HELP = "Dataset directory in the ESCI layout (minielm data generate writes one)."


def _config(ctx: typer.Context, toy: bool):
    from minielm.presets import toy_distill

    config = settings_from(ctx).distill
    return toy_distill(config) if toy else config


@distill_app.command("rewriter")
def rewriter(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    teacher: Path = typer.Option(..., "--teacher", help="The teacher rewriter's exported directory."),
    output: Path = typer.Option(..., "--output", help="Output directory; the student lands in OUTPUT/model."),
    tokenizer: Path | None = typer.Option(
        None, "--tokenizer", help="A tokenizer directory the student must use; it must match the teacher's."
    ),
    index: Path | None = typer.Option(
        None,
        "--index",
        help="BM25 index directory for calibrating selective rewriting (built from the catalog when omitted).",
    ),
    toy: bool = typer.Option(False, "--toy", help="Toy-scale budget (minutes on a laptop)."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Sequence-level KD + token-level KL from the teacher into a smaller decoder (settings: distill.*)."""
    from minielm.distill.stages import distill_rewriter_student

    existing_dir(data, "--data")
    existing_dir(teacher, "--teacher")
    summary = distill_rewriter_student(
        data,
        teacher,
        output,
        _config(ctx, toy),
        seed=settings_from(ctx).seed,
        student_tokenizer_dir=tokenizer,
        index_dir=index,
        eval_config=settings_from(ctx).eval,
    )
    emit(summary, output_format)


@distill_app.command("relevance")
def relevance(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    teacher: Path = typer.Option(..., "--teacher", help="The relevance teacher's exported directory."),
    output: Path = typer.Option(..., "--output", help="Output directory: OUTPUT/triples.parquet, OUTPUT/model."),
    index: Path | None = typer.Option(
        None, "--index", help="BM25 index directory (built from the catalog when omitted)."
    ),
    toy: bool = typer.Option(False, "--toy", help="Toy-scale budget (minutes on a laptop)."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Label augmented triples with the teacher, then train the cross-encoder with Margin-MSE."""
    from minielm.distill.stages import distill_relevance_student, label_augmented_pairs

    existing_dir(data, "--data")
    existing_dir(teacher, "--teacher")
    if index is not None:
        existing_dir(index, "--index")
    config, seed = _config(ctx, toy), settings_from(ctx).seed
    labelled = label_augmented_pairs(data, index, teacher, output, config, seed=seed)
    summary = distill_relevance_student(
        data, labelled["triples_path"], output, config, seed=seed, teacher_relevance_dir=teacher
    )
    emit({"labelled": labelled, "student": summary}, output_format)


@distill_app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    teacher_rewriter: Path = typer.Option(..., help="Teacher rewriter directory."),
    student_rewriter: Path = typer.Option(..., help="Student rewriter directory."),
    teacher_relevance: Path = typer.Option(..., help="Teacher relevance directory."),
    student_relevance: Path = typer.Option(..., help="Student cross-encoder directory."),
    index: Path | None = typer.Option(None, "--index", help="BM25 index directory."),
    output: Path | None = typer.Option(None, "--output", help="Write the JSON report here."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Print the teacher / student / raw / oracle table on the held-out split."""
    from minielm.distill.stages import evaluate_students

    for path, option in (
        (data, "--data"),
        (teacher_rewriter, "--teacher-rewriter"),
        (student_rewriter, "--student-rewriter"),
        (teacher_relevance, "--teacher-relevance"),
        (student_relevance, "--student-relevance"),
    ):
        existing_dir(path, option)
    settings = settings_from(ctx)
    result = evaluate_students(
        data,
        index,
        teacher_rewriter,
        student_rewriter,
        teacher_relevance,
        student_relevance,
        settings.eval,
        settings.serving,
        seed=settings.seed,
    )
    report = {k: v for k, v in result.items() if k != "table"}
    if output is not None:
        output.write_text(json.dumps(report, indent=2, default=str))
    emit(report, output_format, result["table"])


def register(root: typer.Typer) -> None:
    root.add_typer(distill_app, name="distill")
