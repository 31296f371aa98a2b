"""Find and load the models a server hosts: from a local directory or from the S3 registry by stage.

The loader dispatches on what the saved directory says it is, so a teacher or a student of either
kind loads the same way:

1. ``metadata.json`` field ``model_class`` (``"package.module:Class"``), if present;
2. ``cross_encoder.json`` -> :class:`minielm.models.cross_encoder.CrossEncoderScorer`;
3. ``config.json`` of a ``*ForCausalLM`` -> :class:`minielm.models.rewriter.CausalRewriter` for the
   rewriter role, :class:`minielm.models.relevance_teacher.RelevanceTeacher` for the relevance role.

Every class offers ``load(dir)`` and implements the protocols in :mod:`minielm.models.interfaces`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minielm.config import ServingConfig, Settings
from minielm.errors import ServiceError
from minielm.logs import get_logger
from minielm.models.interfaces import QueryRewriter, RelevanceScorer
from minielm.registry import METADATA_FILE, ModelRegistry
from minielm.storage import ObjectStore

log = get_logger(__name__)

Role = Literal["rewriter", "relevance"]
CAUSAL_CLASSES = {
    "rewriter": "minielm.models.rewriter:CausalRewriter",
    "relevance": "minielm.models.relevance_teacher:RelevanceTeacher",
}
CROSS_ENCODER_CLASS = "minielm.models.cross_encoder:CrossEncoderScorer"
PROTOCOLS = {"rewriter": QueryRewriter, "relevance": RelevanceScorer}


class ModelLoadError(ServiceError):
    """A model directory or registry entry cannot be served; the message names the setting or file."""


@dataclass
class LoadedModel:
    name: str
    version: str
    source: str  # "registry:<stage>" or "local:<dir>"
    model: Any


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def model_class_for(directory: Path, role: Role) -> str:
    """``module:Class`` that loads this directory for the role."""
    explicit = _read_json(directory / METADATA_FILE).get("model_class")
    if explicit:
        return explicit
    if (directory / "cross_encoder.json").is_file():
        if role != "relevance":
            raise ModelLoadError(f"{directory} holds a cross-encoder, which cannot serve as a {role}")
        return CROSS_ENCODER_CLASS
    architectures = _read_json(directory / "config.json").get("architectures") or []
    if any(str(a).endswith("ForCausalLM") for a in architectures):
        return CAUSAL_CLASSES[role]
    raise ModelLoadError(
        f"{directory}: cannot tell what model this is (expected metadata.json 'model_class', "
        "cross_encoder.json, or a config.json with a *ForCausalLM architecture)"
    )


def load_model_dir(directory: Path, role: Role, serving: ServingConfig | None = None) -> Any:
    """The model in ``directory`` for ``role``; a causal rewriter through CTranslate2 when ``serving`` asks."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist")
    target = model_class_for(directory, role)
    if role == "rewriter" and target == CAUSAL_CLASSES["rewriter"] and serving is not None:
        if serving.generation_backend == "ctranslate2":
            fast = load_ctranslate2_rewriter(directory, serving.generation_threads)
            if fast is not None:
                return fast
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ModelLoadError(f"{directory}: model class {target} is not importable ({error})") from error
    model = cls.load(directory)
    if not isinstance(model, PROTOCOLS[role]):
        raise ModelLoadError(f"{directory}: {target} does not implement {PROTOCOLS[role].__name__}")
    return model


def load_ctranslate2_rewriter(directory: Path, threads: int) -> Any | None:
    """The CTranslate2 rewriter (converting now when the registry copy has no export), or None with a
    warning and a metric: a model CTranslate2 cannot run is still served, through Hugging Face."""
    from minielm.models.ct2_rewriter import ConversionError, CTranslate2Rewriter, export_ctranslate2, has_ctranslate2
    from serving.metrics import GENERATION_FALLBACK

    try:
        if not has_ctranslate2(directory):
            log.info("no ctranslate2 export beside the weights; converting at load", directory=str(directory))
            export_ctranslate2(directory)
        model = CTranslate2Rewriter.load(directory, threads=threads)
    except ConversionError as error:
        GENERATION_FALLBACK.inc()
        log.warning("serving through hugging face generate instead of ctranslate2", error=str(error))
        return None
    log.info("rewriter served through ctranslate2", directory=str(directory), threads=threads)
    return model


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
