"""Which relevance model plays which part, and how to load any saved relevance model.

Two parts, two different networks (``settings.models``):

* the **judge** (``relevance_judge``, default the distilled cross-encoder student): scores the products a
  rewrite retrieves for the RL reward and for the serving ``rewrite-search`` endpoint; it runs on every
  request, so it is the small fast model.
* the **simulated shopper** (``relevance_simulator``, default the LM teacher): decides what a simulated
  shopper finds relevant. A stronger, different network, so that RL cannot learn to please the very
  model that grades it.

``load_relevance_model`` opens either kind of directory; ``relevance_model_for`` fetches a role's
staged version from the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from minielm.errors import InputError
from minielm.models.interfaces import RelevanceScorer

Role = Literal["judge", "simulator"]
CROSS_ENCODER_MARKER = "cross_encoder.json"
TEACHER_MARKER = "metadata.json"


class RelevanceModelError(InputError):
    """A directory that holds no relevance model, or a role with no staged version."""


def load_relevance_model(directory: Path | str, version: str | None = None) -> RelevanceScorer:
    """A saved cross-encoder student or LM relevance teacher, told apart by the files it holds."""
    directory = Path(directory)
    if (directory / CROSS_ENCODER_MARKER).is_file():
        from minielm.models.cross_encoder import CrossEncoderScorer

        return CrossEncoderScorer.load(directory, version=version)
    metadata_path = directory / TEACHER_MARKER
    if metadata_path.is_file() and "RelevanceTeacher" in str(json.loads(metadata_path.read_text()).get("model_class")):
        from minielm.models.relevance_teacher import RelevanceTeacher

        return RelevanceTeacher.load(directory, version=version)
    raise RelevanceModelError(
        f"{directory} holds no relevance model: expected {CROSS_ENCODER_MARKER} (cross-encoder student) or "
        f"{TEACHER_MARKER} with a RelevanceTeacher model_class (LM teacher)"
    )


def role_model_name(settings, role: Role) -> str:
    """The registered model name of a role (``settings.models.relevance_judge`` / ``relevance_simulator``)."""
    if role == "judge":
        return settings.models.relevance_judge
    if role == "simulator":
        return settings.models.relevance_simulator
    raise RelevanceModelError(f"role: expected 'judge' or 'simulator', got {role!r}")


def relevance_model_for(
    role: Role, settings, registry, workdir: Path | str, stage: str = "production"
) -> RelevanceScorer:
    """Download and load the ``stage`` version of the role's registered model."""
    name = role_model_name(settings, role)
    entry = registry.stage(name, stage)
    if entry is None:
        raise RelevanceModelError(
            f"the relevance {role} is {name!r} (settings.models.relevance_{'judge' if role == 'judge' else 'simulator'}"
            f") but it has no {stage!r} version in the registry: train and register it first"
        )
    local = registry.download(entry.name, entry.version, Path(workdir) / f"relevance-{role}")
    return load_relevance_model(local, version=entry.version)
