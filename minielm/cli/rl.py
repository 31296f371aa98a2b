"""``minielm rl train|status|kserve-patch``: online RL retraining of the student rewriter."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from minielm.cli.common import EXIT_FAILURE, OutputFormat, OutputFormatOption, emit, existing_dir, fail, settings_from

rl_app = typer.Typer(
    help="Online RL (GRPO) of the student rewriter from feedback windows and the relevance "
    "judge, gated and rolled out as a canary.",
    no_args_is_help=True,
)


@rl_app.command("train")
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="ESCI-format data dir (with train/validation/test splits)."),
    index: Path = typer.Option(..., "--index", help="Saved BM25 index dir."),
    judge: Path | None = typer.Option(
        None, "--judge", help="Cross-encoder judge dir (default: the registry's production relevance student)."
    ),
    output: Path | None = typer.Option(None, "--output", help="Run dir (default <runs_dir>/rl)."),
    run_id: str | None = typer.Option(None, help="Run id recorded in the registry metadata."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """One retraining run in this process: windows since the watermark -> GRPO -> evaluate -> gate -> canary
    -> promote or roll back. Exit 0 also for "nothing to do"; prints the run's summary."""
    from minielm.rl.retraining import run_retraining
    from minielm.storage import ObjectStore

    settings = settings_from(ctx)
    existing_dir(data, "--data")
    existing_dir(index, "--index")
    if judge is not None:
        existing_dir(judge, "--judge")
    result = run_retraining(
        settings,
        ObjectStore(settings.s3),
        data,
        index,
        judge,
        output or Path(settings.paths.runs_dir) / "rl",
        run_id,
    )
    emit(result, output_format)


@rl_app.command("status")
def status(ctx: typer.Context, output_format: OutputFormatOption = OutputFormat.text) -> None:
    """The watermark of consumed feedback windows, the windows still to train on, and the rewriter's stages."""
    from minielm.registry import ModelRegistry
    from minielm.rl.feedback import new_windows, read_watermark
    from minielm.storage import ObjectStore

    settings = settings_from(ctx)
    store = ObjectStore(settings.s3)
    watermark = read_watermark(store, settings.rl.watermark_key)
    registry = ModelRegistry(store)
    stages = {}
    for stage in ("production", "candidate"):
        entry = registry.stage(settings.models.student_rewriter, stage)
        stages[stage] = entry.version if entry else None
    pending = new_windows(store, watermark, settings.feedback.windows_prefix)
    emit({"watermark": watermark, "pending_windows": [w.key for w in pending], "stages": stages}, output_format)


@rl_app.command("kserve-patch")
def kserve_patch(
    ctx: typer.Context,
    action: str = typer.Argument(..., help="canary, promote or rollback."),
    isvc_file: Path = typer.Option(
        ..., help="The rewriter's InferenceService as YAML (kubectl get isvc NAME -o yaml)."
    ),
    version: str = typer.Option("", help="The model version (canary and promote)."),
    apply: bool = typer.Option(False, help="Send the patch to the cluster (in-cluster credentials)."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Print (or apply) the merge patch that starts a canary, promotes it or rolls it back (text: YAML)."""
    from minielm.rl import canary

    settings = settings_from(ctx)
    if not isvc_file.is_file():
        raise fail(f"--isvc-file: {isvc_file} does not exist")
    isvc = yaml.safe_load(isvc_file.read_text())
    if not isinstance(isvc, dict) or isvc.get("kind") != "InferenceService":
        raise fail(
            f"--isvc-file: {isvc_file} is not an InferenceService "
            f"(kind: {isvc.get('kind') if isinstance(isvc, dict) else None!r})"
        )
    if action in ("canary", "promote") and not version:
        raise fail(f"--version is required for {action}")
    if action == "canary":
        patch = canary.canary_patch(isvc, version, settings.rl.canary_traffic_percent)
    elif action == "promote":
        patch = canary.promotion_patch(isvc, version)
    elif action == "rollback":
        patch = canary.rollback_patch()
    else:
        raise fail(f"action: expected canary, promote or rollback, got {action!r}")
    emit(patch, output_format)
    if apply:
        try:
            canary.patch_inference_service(
                isvc["metadata"]["name"], isvc["metadata"].get("namespace", settings.rl.namespace), patch
            )
        except Exception as error:  # noqa: BLE001 - the API error is shown, then a failure exit
            raise fail(f"patching the InferenceService failed: {error}", EXIT_FAILURE) from None


def register(root: typer.Typer) -> None:
    root.add_typer(rl_app, name="rl")
