"""``minielm drift check|pin-reference|latest`` and ``minielm model rollback``: what on-call runs."""

from __future__ import annotations

from pathlib import Path

import typer

from minielm.cli.common import EXIT_FAILURE, OutputFormat, OutputFormatOption, emit, fail, settings_from

drift_app = typer.Typer(
    help="Drift monitoring of served traffic (Evidently report, alerts, retraining trigger).", no_args_is_help=True
)
model_app = typer.Typer(help="Model registry operations for on-call.", no_args_is_help=True)


def _read_frame(path: Path, option: str):
    import pandas as pd

    if not path.is_file():
        raise fail(f"{option}: {path} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in {".csv", ".tsv"}:
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    if path.suffix in {".json", ".jsonl", ".ndjson"}:
        return pd.read_json(path, lines=path.suffix != ".json")
    raise fail(f"{option}: expected a .parquet, .csv, .tsv, .json or .jsonl file, got {path.name}")


@drift_app.command("check")
def check(
    ctx: typer.Context,
    reference_key: list[str] = typer.Option(
        [],
        "--reference-key",
        help="Feedback window object to use as reference (repeatable; default: pinned or oldest windows).",
    ),
    current_key: list[str] = typer.Option(
        [], "--current-key", help="Feedback window object to check (repeatable; default: newest windows)."
    ),
    reference_file: Path | None = typer.Option(
        None, help="Local reference window (parquet/csv/jsonl) instead of S3 windows."
    ),
    current_file: Path | None = typer.Option(None, help="Local current window instead of S3 windows."),
    catalog: Path | None = typer.Option(
        None, help="ESCI products parquet (or folder) for the catalog vocabulary (default drift.catalog_path)."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Where the run folder goes (default <paths.reports_dir>/drift)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
    fail_on_drift: bool = typer.Option(
        False, help="Exit 1 when drift is found or data is missing (for cron jobs and CI)."
    ),
) -> None:
    """Compare the current window with the reference: report, summary, metrics, alerts, optional retraining."""
    from minielm.drift.job import run_drift_job
    from minielm.storage import ObjectStore
    from pipelines.submit import retraining_submitter

    settings = settings_from(ctx)
    reference = _read_frame(reference_file, "--reference-file") if reference_file else None
    current = _read_frame(current_file, "--current-file") if current_file else None
    local_only = reference is not None and current is not None
    store = None if local_only and not settings.drift.upload_report else ObjectStore(settings.s3)
    result = run_drift_job(
        settings,
        store=store,
        out_dir=output,
        reference=reference,
        current=current,
        reference_keys=list(reference_key) or None,
        current_keys=list(current_key) or None,
        reference_label=str(reference_file or ""),
        current_label=str(current_file or ""),
        catalog_path=catalog,
        use_windows=not local_only,
        show_progress=True,
        submit_retraining=retraining_submitter(settings),
    )
    lines = [
        *result.summary_lines(),
        f"report: {result.outputs['report_path']}  ({result.outputs.get('report_url', '')})",
    ]
    if result.retraining:
        lines.append(
            f"retraining: {'triggered' if result.retraining['triggered'] else 'not triggered'} "
            f"({result.retraining['reason']})"
        )
    emit(result.to_dict(), output_format, "\n".join(lines))
    if fail_on_drift and result.status != "ok":
        raise typer.Exit(EXIT_FAILURE)


@drift_app.command("pin-reference")
def pin_reference_cmd(
    ctx: typer.Context,
    window_key: list[str] = typer.Argument(
        None, help="Window objects to pin (default: the oldest --oldest windows of each partition)."
    ),
    oldest: int = typer.Option(0, min=0, help="Pin the N oldest windows of each partition."),
    reason: str = typer.Option("", help="Why (kept in the pointer)."),
) -> None:
    """Pin the reference window (e.g. the traffic the production model was validated on; widen it here)."""
    from minielm.drift.sources import oldest_and_newest, pin_reference
    from minielm.feedback.windows import list_windows
    from minielm.storage import ObjectStore

    settings = settings_from(ctx)
    store = ObjectStore(settings.s3)
    keys = list(window_key or [])
    if oldest:
        keys += oldest_and_newest(list_windows(store, prefix=settings.feedback.windows_prefix), oldest, 0)[0]
    if not keys:
        raise fail("give window keys or --oldest N (N >= 1)")
    try:
        pointer = pin_reference(store, settings, keys, reason)
    except ValueError as error:
        raise fail(str(error)) from None
    typer.echo(
        f"pinned {len(pointer['window_keys'])} window(s) as reference at "
        f"s3://{store.bucket}/{settings.drift.reference_pointer_key}"
    )


@drift_app.command("latest")
def latest(ctx: typer.Context, output_format: OutputFormatOption = OutputFormat.text) -> None:
    """Print the latest drift summary stored on S3."""
    from minielm.storage import ObjectStore

    settings = settings_from(ctx)
    summary = ObjectStore(settings.s3).read_pointer(f"{settings.drift.reports_prefix}/latest.json")
    if summary is None:
        raise fail(
            f"no drift run yet: s3://{settings.s3.bucket}/{settings.drift.reports_prefix}/latest.json does not exist",
            EXIT_FAILURE,
        )
    emit(summary, output_format)


@model_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name, e.g. student-rewriter."),
    stage: str = typer.Option("production", help="Stage to roll back (production or candidate)."),
) -> None:
    """Point the stage back at the version it held before the last promotion (one atomic pointer write)."""
    from minielm.registry import ModelRegistry
    from minielm.storage import ObjectStore

    if stage not in {"production", "candidate"}:
        raise fail(f"--stage: expected production or candidate, got {stage!r}")
    pointer = ModelRegistry(ObjectStore(settings_from(ctx).s3)).rollback(name, stage)
    typer.echo(f"{name}/{stage} now at version {pointer['version']} (was {pointer['previous']})")


def register(root: typer.Typer) -> None:
    root.add_typer(drift_app, name="drift")
    root.add_typer(model_app, name="model")
