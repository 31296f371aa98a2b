"""The platform's KFP pipelines by name, and what can be done with any of them.

Each pipeline is a module here that defines ``NAME``, ``pipeline_func`` (the ``@dsl.pipeline``),
``default_arguments(settings) -> dict`` and ``run_local(settings, **params) -> dict`` (kfp.local).
Compiled YAML lives in ``pipelines/compiled/<NAME>.yaml`` and is what a cluster runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

PIPELINE_MODULES = {
    "training": "pipelines.training",
    "rl_retraining": "pipelines.rl_retraining",
    "drift_monitoring": "pipelines.drift_monitoring",
}
COMPILED_DIR = Path(__file__).resolve().parent / "compiled"
SCHEDULE_SETTINGS = {"rl_retraining": "rl_retraining_cron", "drift_monitoring": "drift_monitoring_cron"}


class PipelineNotFound(KeyError):
    """No pipeline of that name is part of the platform."""


def load_pipeline(name: str) -> ModuleType:
    if name not in PIPELINE_MODULES:
        raise PipelineNotFound(f"unknown pipeline {name!r}; expected one of {sorted(PIPELINE_MODULES)}")
    return importlib.import_module(PIPELINE_MODULES[name])


def compiled_path(name: str, out_dir: Path = COMPILED_DIR) -> Path:
    return Path(out_dir) / f"{name}.yaml"


def compile_pipeline(name: str, out_dir: Path = COMPILED_DIR) -> Path:
    """Compile one pipeline to YAML (deterministic: the same code gives the same file)."""
    from kfp import compiler

    module = load_pipeline(name)
    path = compiled_path(name, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(module.pipeline_func, package_path=str(path))
    return path


def upsert_recurring_run(client, name: str, experiment: str, cron: str, arguments: dict, package_path: Path) -> str:
    """Create the recurring run ``minielm-<name>``, replacing an existing one of that name (idempotent)."""
    experiment_id = client.create_experiment(name=experiment).experiment_id
    display_name = f"minielm-{name}"
    existing = client.list_recurring_runs(experiment_id=experiment_id, page_size=200)
    for run in getattr(existing, "recurring_runs", None) or []:
        if run.display_name == display_name:
            client.delete_recurring_run(run.recurring_run_id)
    created = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=display_name,
        cron_expression=cron,
        pipeline_package_path=str(package_path),
        params=arguments,
        max_concurrency=1,
        no_catchup=True,
    )
    return created.recurring_run_id
