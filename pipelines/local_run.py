"""Running a platform pipeline with kfp.local: one subprocess per task, against the configured services."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from minielm.config import Settings


def write_settings_file(settings: Settings, path: Path) -> Path:
    """The live settings (secrets included) for the local task subprocesses, readable by the owner only."""
    data = settings.model_dump(mode="json")
    for field in ("access_key_id", "secret_access_key"):
        secret = getattr(settings.s3, field)
        data["s3"][field] = secret.get_secret_value() if secret is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(data))
    return path


def run_locally(
    pipeline_func: Callable,
    name: str,
    settings: Settings,
    default_arguments: dict,
    params: dict,
    run_id_prefix: str,
    takes_run_id: bool = True,
) -> dict:
    """Run ``pipeline_func`` under kfp.local; returns its JSON output. The settings file it writes for the
    tasks (it holds the S3 keys) is removed afterwards; ``params`` may name ``run_id`` and ``config_file``."""
    from kfp import local

    params = dict(params)
    run_id = params.pop("run_id", None) or time.strftime(f"{run_id_prefix}-%Y%m%d-%H%M%S", time.gmtime())
    root = Path(settings.paths.runs_dir).resolve() / "kfp" / name
    config_file = params.pop("config_file", None) or str(write_settings_file(settings, root / run_id / "settings.json"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    arguments = {**default_arguments, **params}
    if takes_run_id:
        arguments["run_id"] = run_id
    try:
        task = pipeline_func(config_file=config_file, **arguments)
    finally:
        if config_file.startswith(str(root)):
            os.remove(config_file)
    return json.loads(task.output)
