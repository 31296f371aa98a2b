"""``minielm model list|rollback``: the registry as on-call sees it, and the one-command rollback."""

from __future__ import annotations

import json
import time

import typer

from minielm.cli.common import EXIT_FAILURE, fail, settings_from

model_app = typer.Typer(help="Model registry operations for on-call.", no_args_is_help=True)
OUTPUT_FORMATS = ("text", "json")
STAGE_CHOICES = ("production", "candidate")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else "-"


def _headline_metrics(metadata: dict) -> str:
    metrics = metadata.get("metrics") or {}
    shown = [f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, int | float)][:3]
    return " ".join(shown)


def registry_listing(registry, name: str) -> dict:
    """Versions (oldest first, with metadata), and each stage's pointer with its history."""
    versions = [registry.get(name, v).metadata for v in registry.versions(name)]
    stages = {stage: registry.stage_pointer(name, stage) for stage in STAGE_CHOICES}
    return {"name": name, "versions": versions, "stages": stages}


def _print_listing(listing: dict) -> None:
    stage_of: dict[str, list[str]] = {}
    for stage, pointer in listing["stages"].items():
        if pointer:
            stage_of.setdefault(pointer["version"], []).append(stage)
    typer.echo(f"{'VERSION':<32} {'STAGES':<22} {'REGISTERED':<21} {'PARENT':<32} METRICS")
    for meta in listing["versions"]:
        version = meta.get("version", "?")
        typer.echo(
            f"{version:<32} {','.join(stage_of.get(version, [])) or '-':<22} {_when(meta.get('registered_at')):<21} "
            f"{meta.get('parent_version') or '-':<32} {_headline_metrics(meta)}"
        )
    for stage, pointer in listing["stages"].items():
        if not pointer:
            typer.echo(f"\n{stage}: not set")
            continue
        typer.echo(
            f"\n{stage}: {pointer['version']} since {_when(pointer.get('updated_at'))}"
            f" ({pointer.get('reason') or 'no reason given'})"
        )
        history = pointer.get("history") or []
        typer.echo(f"  earlier, newest first: {', '.join(history) if history else 'none (nothing to roll back to)'}")


@model_app.command("list")
def list_versions(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name, e.g. student-rewriter."),
    output_format: str = typer.Option("text", "--output-format", "-o", help="text or json."),
) -> None:
    """Show a model's versions, which stage points at which, and each stage's history."""
    from minielm.registry import ModelRegistry
    from minielm.storage import ObjectStore

    if output_format not in OUTPUT_FORMATS:
        raise fail(f"-o/--output-format: expected one of {list(OUTPUT_FORMATS)}, got {output_format!r}")
    listing = registry_listing(ModelRegistry(ObjectStore(settings_from(ctx).s3)), name)
    if not listing["versions"]:
        raise fail(f"model {name!r} has no registered versions")
    if output_format == "json":
        typer.echo(json.dumps(listing, indent=2, default=str))
    else:
        _print_listing(listing)


@model_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name, e.g. student-rewriter."),
    stage: str = typer.Option("production", help="Stage to roll back (production or candidate)."),
    isvc: bool | None = typer.Option(
        None,
        "--isvc/--no-isvc",
        help="Also patch the InferenceService rl.isvc_name in rl.namespace with your cluster credentials "
        "(canary traffic to 0, version annotation). Default: on when rl.kserve_rollout is set (the chart sets it).",
    ),
) -> None:
    """Point the stage back at the version it held before the last promotion; serving follows within
    serving.registry_poll_s. On a cluster the InferenceService is checked first and patched after."""
    from minielm import rollout
    from minielm.registry import ModelRegistry, RegistryError
    from minielm.storage import ObjectStore

    settings = settings_from(ctx)
    if stage not in STAGE_CHOICES:
        raise fail(f"--stage: expected production or candidate, got {stage!r}")
    registry = ModelRegistry(ObjectStore(settings.s3))
    pointer = registry.stage_pointer(name, stage)
    if not pointer or not pointer.get("history"):
        raise fail(f"{name}/{stage} has no previous version to roll back to (see `minielm model list {name}`)")
    patch_isvc = settings.rl.kserve_rollout if isvc is None else isvc
    target = (settings.rl.isvc_name, settings.rl.namespace)
    api = service = None
    if patch_isvc:
        try:
            api = rollout.caller_api()
            service = rollout.get_inference_service(api, *target)
        except rollout.ClusterError as error:
            raise fail(f"{error}; nothing was changed (--no-isvc rolls back the registry only)", EXIT_FAILURE) from None
    try:
        new_pointer = registry.rollback(name, stage)
    except RegistryError as error:
        raise fail(str(error)) from None
    typer.echo(f"{name}/{stage} now at version {new_pointer['version']} (was {new_pointer['previous']})")
    if service is not None:
        patch = rollout.rollback_patch(service, new_pointer["version"])
        try:
            rollout.patch_inference_service(api, *target, patch)
        except rollout.ClusterError as error:
            raise fail(
                f"{error}; the registry is rolled back, finish with: kubectl -n {target[1]} patch "
                f"inferenceservice {target[0]} --type merge -p '{json.dumps(patch)}'",
                EXIT_FAILURE,
            ) from None
        typer.echo(f"InferenceService {target[1]}/{target[0]} patched: {json.dumps(patch)}")
    typer.echo(f"serving switches within serving.registry_poll_s={settings.serving.registry_poll_s:g} s")


def register(root: typer.Typer) -> None:
    root.add_typer(model_app, name="model")
