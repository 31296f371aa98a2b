"""Find and load the models a server hosts: from a local directory or from the S3 registry by stage.

What a saved directory is and how it loads (class dispatch, CTranslate2 with the Hugging Face fallback)
lives in :mod:`minielm.models.loading`, shared with the batch jobs that must answer as serving does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minielm.config import Settings
from minielm.logs import get_logger
from minielm.models.loading import (
    CAUSAL_CLASSES,
    CROSS_ENCODER_CLASS,
    ModelLoadError,
    Role,
    load_ctranslate2_rewriter,
    load_model_dir,
    model_class_for,
)
from minielm.models.loading import read_json as _read_json
from minielm.registry import METADATA_FILE, ModelRegistry
from minielm.storage import ObjectStore

log = get_logger(__name__)

__all__ = [
    "CAUSAL_CLASSES",
    "CROSS_ENCODER_CLASS",
    "LoadedModel",
    "ModelLoadError",
    "Role",
    "load_ctranslate2_rewriter",
    "load_model_dir",
    "load_version",
    "model_class_for",
    "resolve",
]


@dataclass
class LoadedModel:
    name: str
    version: str
    source: str  # "registry:<stage>" or "local:<dir>"
    model: Any


def resolve(
    settings: Settings, name: str, role: Role, local_path: Path | None, stage: str | None = None
) -> LoadedModel:
    """Load ``name`` from ``local_path`` if given, else the version the registry stage points at."""
    if local_path is not None:
        directory = Path(local_path)
        metadata = _read_json(directory / METADATA_FILE)
        model = load_model_dir(directory, role, settings.serving)
        version = str(metadata.get("version") or getattr(model, "version", None) or "local")
        log.info("model loaded", name=name, version=version, source=str(directory))
        return LoadedModel(name, version, f"local:{directory}", model)
    stage = stage or settings.serving.model_stage
    version = ModelRegistry(ObjectStore(settings.s3)).stage_version(name, stage)
    if version is None:
        raise ModelLoadError(f"serving.model_stage: model {name!r} has no {stage!r} version in the registry")
    return load_version(settings, name, role, version, stage)


def load_version(settings: Settings, name: str, role: Role, version: str, stage: str) -> LoadedModel:
    """Download one registered version (unless already on disk) and load it; ``stage`` is what it serves as."""
    registry = ModelRegistry(ObjectStore(settings.s3))
    directory = registry.download(name, version, Path(settings.paths.models_dir) / name / version)
    model = load_model_dir(directory, role, settings.serving)
    log.info("model loaded", name=name, version=version, source=f"registry:{stage}")
    return LoadedModel(name, version, f"registry:{stage}", model)
