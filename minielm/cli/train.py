"""``minielm train teacher-rewriter|teacher-relevance``: fine-tune the teachers with DeepSpeed.

The settings section ``teachers`` is the config (``--set teachers.rewriter.training.max_steps=50``);
the options below override its most used fields. The output directory is resumable: run the same
command again after a kill and training continues from the last checkpoint. Defaults train on
SmolLM2-135M-Instruct (slow on CPU: ~200 tokens/s); ``--backbone tiny`` trains the toy-scale model
with its own step budget in seconds. Other trainers may add commands to ``train_app``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from minielm.cli.common import OutputFormat, OutputFormatOption, emit, fail, settings_from
from minielm.config import Settings

train_app = typer.Typer(help="Fine-tune models (teachers) through the DeepSpeed training core.", no_args_is_help=True)


def _teacher_config(
    section,
    backbone: str | None,
    max_steps: int | None,
    zero_stage: int | None,
    precision: str | None,
    role: str,
):
    from pydantic import ValidationError

    from minielm.teachers.config import TINY_TRAINING

    try:
        config = section
        if backbone == "tiny" and section.backbone != "tiny":
            config = config.model_copy(update={"training": TINY_TRAINING[role]})
        update = {
            k: v
            for k, v in {"max_steps": max_steps, "zero_stage": zero_stage, "precision": precision}.items()
            if v is not None
        }
        if max_steps is not None:
            update["warmup_steps"] = min(config.training.warmup_steps, max_steps)
        training = type(config.training).model_validate({**config.training.model_dump(), **update})
        fields = {**config.model_dump(), "training": training.model_dump()}
        if backbone is not None:
            fields["backbone"] = backbone
        return type(config).model_validate(fields)
    except ValidationError as error:
        from minielm.config import format_validation_error

        raise fail(format_validation_error(error)) from None


def _dirs(settings: Settings, data: Path | None, output: Path | None, name: str) -> tuple[Path, Path]:
    data = data or Path(settings.paths.data_dir) / "synthetic"
    if not data.is_dir():
        raise fail(f"--data: {data} is not a directory (make one with `minielm data generate`)")
    return data, output or Path(settings.paths.runs_dir) / name


def _finish(settings: Settings, run, register: bool, model_name: str, output_format: OutputFormat) -> None:
    result = {
        "metrics": {k: v for k, v in run.metrics.items() if k != "examples"},
        "model_dir": str(run.model_dir),
        "registered": None,
    }
    if register:
        from minielm.registry import ModelRegistry
        from minielm.storage import ObjectStore
        from minielm.teachers.publish import register_teacher

        entry = register_teacher(ModelRegistry(ObjectStore(settings.s3)), model_name, run)
        result["registered"] = {"name": model_name, "version": entry.version}
    emit(result, output_format)


BACKBONE_HELP = "smollm2 (SmolLM2-135M-Instruct, default) or tiny (toy-scale decoder, fast on CPU)."


@train_app.command("teacher-rewriter")
def teacher_rewriter(
    ctx: typer.Context,
    data: Path | None = typer.Option(
        None, "--data", help="ESCI dir, canonical_query optional (default <data_dir>/synthetic)."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Run dir, resumable (default <runs_dir>/teacher-rewriter)."
    ),
    backbone: str | None = typer.Option(None, "--backbone", help=BACKBONE_HELP),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Optimizer steps."),
    zero_stage: int | None = typer.Option(None, "--zero-stage", help="DeepSpeed ZeRO stage 0-3."),
    precision: str | None = typer.Option(None, "--precision", help="auto, bf16 or fp32."),
    index: Path | None = typer.Option(
        None, "--index", help="BM25 index for the evaluation (default: built from the data)."
    ),
    register: bool = typer.Option(False, "--register/--no-register", help="Register the model in the S3 registry."),
    output_format: OutputFormatOption = OutputFormat.text,
    label_free: str | None = typer.Option(
        None,
        "--label-free",
        help="auto (default: label-free when the data has no canonical_query), on or off. Label-free "
        "trains on candidate rewrites that retrieve more relevant products.",
    ),
    init_from: Path | None = typer.Option(
        None, "--init-from", help="A saved rewriter dir to train further instead of the backbone (supervised)."
    ),
) -> None:
    """Fine-tune the rewriter teacher on (noisy query -> canonical rewrite) pairs, or label-free on
    retrieval-verified candidates when the data has no canonical rewrites, and evaluate it."""
    from minielm.teachers.rewriter import train_rewriter

    settings = settings_from(ctx)
    config = _teacher_config(settings.teachers.rewriter, backbone, max_steps, zero_stage, precision, "rewriter")
    if label_free is not None:
        if label_free not in ("auto", "on", "off"):
            raise fail(f"--label-free: expected auto, on or off, got {label_free!r}")
        config = config.model_copy(update={"label_free": label_free})
    data, output = _dirs(settings, data, output, "teacher-rewriter")
    if init_from is not None and not (init_from / "config.json").is_file():
        raise fail(f"--init-from: {init_from} holds no saved rewriter (no config.json)")
    run = train_rewriter(
        data,
        output,
        config,
        cache_dir=settings.teachers.models_cache_dir,
        index_dir=index,
        top_k=settings.eval.top_k,
        substitute_is_relevant=settings.eval.substitute_is_relevant,
        init_from=init_from,
    )
    _finish(settings, run, register, settings.models.teacher_rewriter, output_format)


@train_app.command("teacher-relevance")
def teacher_relevance(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="ESCI dir (default <data_dir>/synthetic)."),
    output: Path | None = typer.Option(
        None, "--output", help="Run dir, resumable (default <runs_dir>/teacher-relevance)."
    ),
    backbone: str | None = typer.Option(None, "--backbone", help=BACKBONE_HELP),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Optimizer steps."),
    zero_stage: int | None = typer.Option(None, "--zero-stage", help="DeepSpeed ZeRO stage 0-3."),
    precision: str | None = typer.Option(None, "--precision", help="auto, bf16 or fp32."),
    register: bool = typer.Option(False, "--register/--no-register", help="Register the model in the S3 registry."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Fine-tune the LM relevance teacher (4-way ESCI head) on labelled pairs and evaluate it."""
    from minielm.teachers.relevance import train_relevance_teacher

    settings = settings_from(ctx)
    config = _teacher_config(settings.teachers.relevance, backbone, max_steps, zero_stage, precision, "relevance")
    data, output = _dirs(settings, data, output, "teacher-relevance")
    run = train_relevance_teacher(
        data, output, config, cache_dir=settings.teachers.models_cache_dir, top_k=settings.eval.top_k
    )
    _finish(settings, run, register, settings.models.teacher_relevance, output_format)


def register(root: typer.Typer) -> None:
    root.add_typer(train_app, name="train")
