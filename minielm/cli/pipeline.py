"""``minielm pipeline list|compile|run|schedule``: the KFP pipelines, locally or on a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml

from minielm.cli.common import EXIT_FAILURE, OutputFormat, OutputFormatOption, emit, fail, settings_from

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


@pipeline_app.command("list")
def list_pipelines() -> None:
    """Name each pipeline and where its compiled YAML lives."""
    from pipelines.registry import PIPELINE_MODULES, compiled_path

    for name in PIPELINE_MODULES:
        path = compiled_path(name)
        typer.echo(f"{name:<18} {path if path.exists() else '(not compiled)'}")


@pipeline_app.command("compile")
def compile_cmd(
    ctx: typer.Context,
    names: list[str] | None = typer.Argument(None, help="Pipelines to compile (default: all)."),
    output: Path | None = typer.Option(None, "--output", help="Output folder (default pipelines/compiled)."),
) -> None:
    """Compile pipelines to KFP YAML for the current `pipelines.*` settings (image, ConfigMap, Secret,
    resources, accelerator, placement). The checked-in files are compiled with the default settings."""
    from pipelines.registry import COMPILED_DIR, PIPELINE_MODULES, compile_pipeline, load_pipeline

    settings = settings_from(ctx)
    for name in names or list(PIPELINE_MODULES):
        load_pipeline(name)
        typer.echo(f"compiled {name} -> {compile_pipeline(name, output or COMPILED_DIR, settings.pipelines)}")


HOST_HELP = "KFP API URL (default pipelines.kfp_host); without either the pipeline runs locally with kfp.local."
NAMESPACE_HELP = "Kubeflow profile namespace of the run (default pipelines.namespace; multi-user Kubeflow)."
TOKEN_HELP = "Bearer token for the KFP API (else $MINIELM_KFP_TOKEN, else --token-file or the projected token)."
TOKEN_FILE_HELP = "File holding the bearer token (default $KF_PIPELINES_SA_TOKEN_PATH when set)."


@pipeline_app.command("run")
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="training, rl_retraining or drift_monitoring."),
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter name=value (repeatable)."),
    host: str | None = typer.Option(None, help=HOST_HELP),
    namespace: str | None = typer.Option(None, help=NAMESPACE_HELP),
    existing_token: str | None = typer.Option(None, "--existing-token", help=TOKEN_HELP),
    token_file: Path | None = typer.Option(None, "--token-file", help=TOKEN_FILE_HELP),
    wait: bool = typer.Option(False, "--wait", help="Stream task states until the run ends; exit 0 if it succeeded."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Run a pipeline locally (kfp.local on the embedded services) or submit it to Kubeflow Pipelines.

    On a cluster, data parameters are s3:// URIs (`minielm data upload DIR s3://...`); the command prints the
    run URL, and with --wait the task states and the final state.
    """
    from pipelines.registry import load_pipeline

    settings = settings_from(ctx)
    module = load_pipeline(name)
    params = _params(param)
    if not (host or settings.pipelines.kfp_host):
        emit(module.run_local(settings, **{**module.default_arguments(settings), **params}), output_format)
        return
    from pipelines.submit import endpoint_from, submit_run, wait_for_run

    endpoint = endpoint_from(settings, host, namespace, existing_token, token_file)
    submitted = submit_run(endpoint, name, params, settings)
    if output_format == "text":
        typer.echo(f"submitted {name}: {submitted.url}")
    if not wait:
        if output_format == "json":
            typer.echo(json.dumps(submitted.as_dict(), indent=2))
        return

    def show(task: str, state: str) -> None:
        typer.echo(f"{task}: {state}", err=output_format == "json")

    state = wait_for_run(endpoint, submitted.run_id, on_change=show)
    if output_format == "json":
        typer.echo(json.dumps({**submitted.as_dict(), "state": state}, indent=2))
    else:
        typer.echo(f"run {submitted.run_id} {state}: {submitted.url}")
    if state != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILURE)


@pipeline_app.command("schedule")
def schedule(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="rl_retraining or drift_monitoring."),
    host: str | None = typer.Option(None, help="KFP API URL (default pipelines.kfp_host)."),
    namespace: str | None = typer.Option(None, help=NAMESPACE_HELP),
    existing_token: str | None = typer.Option(None, "--existing-token", help=TOKEN_HELP),
    token_file: Path | None = typer.Option(None, "--token-file", help=TOKEN_FILE_HELP),
    cron: str | None = typer.Option(None, help="6-field cron; default from pipelines.<name>_cron."),
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter name=value."),
) -> None:
    """Create or replace the recurring run of a pipeline on Kubeflow Pipelines (idempotent)."""
    from pipelines.registry import SCHEDULE_SETTINGS, load_pipeline
    from pipelines.submit import endpoint_from, schedule_run

    settings = settings_from(ctx)
    if name not in SCHEDULE_SETTINGS:
        raise fail(f"pipeline {name!r} has no schedule; expected one of {sorted(SCHEDULE_SETTINGS)}")
    cron = cron or getattr(settings.pipelines, SCHEDULE_SETTINGS[name])
    if len(cron.split()) != 6:
        raise fail(f"--cron: expected 6 fields (sec min hour day month weekday), got {cron!r}")
    load_pipeline(name)
    params = _params(param)
    endpoint = endpoint_from(settings, host, namespace, existing_token, token_file)
    run_id = schedule_run(endpoint, name, cron, params, settings)
    typer.echo(f"scheduled {name} ({cron}): recurring run id {run_id}")


def register(root: typer.Typer) -> None:
    root.add_typer(pipeline_app, name="pipeline")
