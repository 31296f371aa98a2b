"""Load a saved model directory for a role, dispatching on what the directory says it is.

Serving and the batch jobs that must answer exactly as serving does (the head-query rewrite cache) load
models the same way:

1. ``metadata.json`` field ``model_class`` (``"package.module:Class"``), if present;
2. ``cross_encoder.json`` -> :class:`minielm.models.cross_encoder.CrossEncoderScorer`;
3. ``config.json`` of a ``*ForCausalLM`` -> :class:`minielm.models.rewriter.CausalRewriter` for the
   rewriter role, :class:`minielm.models.relevance_teacher.RelevanceTeacher` for the relevance role.

A causal rewriter generates through CTranslate2 when ``serving.generation_backend`` asks for it; a model
CTranslate2 cannot run is loaded through Hugging Face with a warning and ``minielm_generation_fallback_total``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Literal

from prometheus_client import Counter

from minielm.config import ServingConfig
from minielm.errors import ServiceError
from minielm.logs import get_logger
from minielm.models.interfaces import QueryRewriter, RelevanceScorer
from minielm.registry import METADATA_FILE

log = get_logger(__name__)

Role = Literal["rewriter", "relevance"]
CAUSAL_CLASSES = {
    "rewriter": "minielm.models.rewriter:CausalRewriter",
    "relevance": "minielm.models.relevance_teacher:RelevanceTeacher",
}
CROSS_ENCODER_CLASS = "minielm.models.cross_encoder:CrossEncoderScorer"
PROTOCOLS = {"rewriter": QueryRewriter, "relevance": RelevanceScorer}

GENERATION_FALLBACK = Counter(
    "minielm_generation_fallback",
    "Rewriters served through Hugging Face generate because CTranslate2 could not run them",
)


class ModelLoadError(ServiceError):
    """A model directory or registry entry cannot be served; the message names the setting or file."""


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def model_class_for(directory: Path, role: Role) -> str:
    """``module:Class`` that loads this directory for the role."""
    explicit = read_json(directory / METADATA_FILE).get("model_class")
    if explicit:
        return explicit
    if (directory / "cross_encoder.json").is_file():
        if role != "relevance":
            raise ModelLoadError(f"{directory} holds a cross-encoder, which cannot serve as a {role}")
        return CROSS_ENCODER_CLASS
    architectures = read_json(directory / "config.json").get("architectures") or []
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
            fast = load_ctranslate2_rewriter(directory, serving.generation_threads, serving.max_new_tokens_over_query)
            if fast is not None:
                return fast
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ModelLoadError(f"{directory}: model class {target} is not importable ({error})") from error
    options = {}
    if target == CAUSAL_CLASSES["rewriter"] and serving is not None:  # served as CTranslate2 would serve it
        options["max_new_tokens_over_query"] = serving.max_new_tokens_over_query
    model = cls.load(directory, **options)
    if not isinstance(model, PROTOCOLS[role]):
        raise ModelLoadError(f"{directory}: {target} does not implement {PROTOCOLS[role].__name__}")
    return model


def load_ctranslate2_rewriter(
    directory: Path, threads: int, max_new_tokens_over_query: int | None = None
) -> Any | None:
    """The CTranslate2 rewriter (converting now when the registry copy has no export), or None with a
    warning and a metric: a model CTranslate2 cannot run is still served, through Hugging Face."""
    from minielm.models.ct2_rewriter import ConversionError, CTranslate2Rewriter, export_ctranslate2, has_ctranslate2

    try:
        if not has_ctranslate2(directory):
            log.info("no ctranslate2 export beside the weights; converting at load", directory=str(directory))
            export_ctranslate2(directory)
        model = CTranslate2Rewriter.load(
            directory, threads=threads, max_new_tokens_over_query=max_new_tokens_over_query
        )
    except ConversionError as error:
        GENERATION_FALLBACK.inc()
        log.warning("serving through hugging face generate instead of ctranslate2", error=str(error))
        return None
    log.info("rewriter served through ctranslate2", directory=str(directory), threads=threads)
    return model
