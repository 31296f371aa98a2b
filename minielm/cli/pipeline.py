"""``minielm pipeline list|compile|run|schedule``: the KFP pipelines, locally or on a cluster."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer
import yaml

from minielm.cli.common import fail, settings_from

pipeline_app = typer.Typer(
    help="Compile, run and schedule the KFP pipelines (training, rl_retraining, drift_monitoring).",
    no_args_is_help=True,
)


def _params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise fail(f"--param expects name=value, got {item!r}")
        params[key] = yaml.safe_load(raw)
    return params


def _load(name: str):
    from pipelines.registry import PipelineNotFound, load_pipeline

    try:
        return load_pipeline(name)
    except PipelineNotFound as error:
        raise fail(str(error.args[0])) from None


@pipeline_app.command("list")
def list_pipelines() -> None:
    """Name each pipeline and where its compiled YAML lives."""
    from pipelines.registry import PIPELINE_MODULES, compiled_path

    for name in PIPELINE_MODULES:
        path = compiled_path(name)
        typer.echo(f"{name:<18} {path if path.exists() else '(not compiled)'}")


@pipeline_app.command("compile")
def compile_cmd(
    names: list[str] | None = typer.Argument(None, help="Pipelines to compile (default: all)."),
    out_dir: Path | None = typer.Option(None, help="Output folder (default pipelines/compiled)."),
) -> None:
    """Compile pipelines to KFP YAML (the files a cluster runs; checked into the repo)."""
    from pipelines.registry import COMPILED_DIR, PIPELINE_MODULES, compile_pipeline

    for name in names or list(PIPELINE_MODULES):
        _load(name)
        typer.echo(f"compiled {name} -> {compile_pipeline(name, out_dir or COMPILED_DIR)}")


@pipeline_app.command("run")
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="training, rl_retraining or drift_monitoring."),
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter name=value (repeatable)."),
    host: str | None = typer.Option(
        None, help="KFP API URL; without it (and without pipelines.kfp_host) the pipeline runs locally with kfp.local."
    ),
) -> None:
    """Run a pipeline locally (kfp.local on the embedded services) or submit it to Kubeflow Pipelines."""
    settings = settings_from(ctx)
    module = _load(name)
    arguments = {**module.default_arguments(settings), **_params(param)}
    host = host or settings.pipelines.kfp_host
    if host is None:
        result = module.run_local(settings, **arguments)
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    import kfp

    from pipelines.registry import compile_pipeline

    client = kfp.Client(host=host)
    with tempfile.TemporaryDirectory() as out_dir:  # the image's own tree is read-only
        run_ = client.create_run_from_pipeline_package(
            str(compile_pipeline(name, Path(out_dir))),
            arguments=arguments,
            experiment_name=settings.pipelines.experiment,
            run_name=f"minielm-{name}",
        )
    typer.echo(f"submitted {name}: run id {run_.run_id}")


@pipeline_app.command("schedule")
def schedule(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="rl_retraining or drift_monitoring."),
    host: str | None = typer.Option(None, help="KFP API URL (default pipelines.kfp_host)."),
    cron: str | None = typer.Option(None, help="6-field cron; default from pipelines.<name>_cron."),
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter name=value."),
) -> None:
    """Create or replace the recurring run of a pipeline on Kubeflow Pipelines (idempotent)."""
    from pipelines.registry import SCHEDULE_SETTINGS, compile_pipeline, upsert_recurring_run

    settings = settings_from(ctx)
    if name not in SCHEDULE_SETTINGS:
        raise fail(f"pipeline {name!r} has no schedule; expected one of {sorted(SCHEDULE_SETTINGS)}")
    host = host or settings.pipelines.kfp_host
    if not host:
        raise fail("--host (or pipelines.kfp_host) is required to schedule on a cluster")
    cron = cron or getattr(settings.pipelines, SCHEDULE_SETTINGS[name])
    if len(cron.split()) != 6:
        raise fail(f"--cron: expected 6 fields (sec min hour day month weekday), got {cron!r}")
    module = _load(name)
    import kfp

    arguments = {**module.default_arguments(settings), **_params(param)}
    with tempfile.TemporaryDirectory() as out_dir:  # the image's own tree is read-only
        run_id = upsert_recurring_run(
            kfp.Client(host=host),
            name,
            settings.pipelines.experiment,
            cron,
            arguments,
            compile_pipeline(name, Path(out_dir)),
        )
    typer.echo(f"scheduled {name} ({cron}): recurring run id {run_id}")


def register(root: typer.Typer) -> None:
    root.add_typer(pipeline_app, name="pipeline")
