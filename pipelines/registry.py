"""The platform's KFP pipelines by name, and what can be done with any of them.

Each pipeline is a module here that defines ``NAME``, ``URI_PARAMETERS`` (the parameters that name
s3:// data), ``build_pipeline(settings.pipelines)`` (the ``@dsl.pipeline``, its task pods configured
from the settings), ``cluster_arguments(settings)`` (what a cluster run gets unless it says otherwise),
``default_arguments(settings)`` and ``run_local(settings, **params) -> dict`` (kfp.local, local paths).
``pipelines/compiled/<NAME>.yaml`` is each pipeline compiled with the default settings,
checked in and compared in a test; a submission compiles with the live settings into a temporary folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from minielm.config import PipelinesConfig
from minielm.errors import InputError

PIPELINE_MODULES = {
    "training": "pipelines.training",
    "rl_retraining": "pipelines.rl_retraining",
    "drift_monitoring": "pipelines.drift_monitoring",
}
COMPILED_DIR = Path(__file__).resolve().parent / "compiled"
SCHEDULE_SETTINGS = {"rl_retraining": "rl_retraining_cron", "drift_monitoring": "drift_monitoring_cron"}


class PipelineNotFound(InputError, KeyError):
    """No pipeline of that name is part of the platform."""


def load_pipeline(name: str) -> ModuleType:
    if name not in PIPELINE_MODULES:
        raise PipelineNotFound(f"unknown pipeline {name!r}; expected one of {sorted(PIPELINE_MODULES)}")
    return importlib.import_module(PIPELINE_MODULES[name])


def compiled_path(name: str, out_dir: Path = COMPILED_DIR) -> Path:
    return Path(out_dir) / f"{name}.yaml"


def compile_pipeline(name: str, out_dir: Path = COMPILED_DIR, cluster: PipelinesConfig | None = None) -> Path:
    """Compile one pipeline to YAML for ``cluster`` (default settings: the checked-in files); deterministic."""
    from kfp import compiler

    module = load_pipeline(name)
    path = compiled_path(name, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(module.build_pipeline(cluster or PipelinesConfig()), package_path=str(path))
    return path
