"""Register a trained teacher in the S3 model registry with its metadata (metrics, data hash, config)."""

from __future__ import annotations

import json
from typing import Any

from minielm.registry import METADATA_FILE, ModelRegistry, ModelVersion
from minielm.teachers.common import TeacherRun


def register_teacher(
    registry: ModelRegistry, name: str, run: TeacherRun, extra: dict[str, Any] | None = None
) -> ModelVersion:
    """Upload ``run.model_dir`` as a new version of ``name``; the local metadata.json then records it."""
    local_metadata_path = run.model_dir / METADATA_FILE
    local = json.loads(local_metadata_path.read_text()) if local_metadata_path.is_file() else {}
    metadata = {**local, "train": run.train, "parent_version": None, **(extra or {})}
    entry = registry.register(name, run.model_dir, metadata)
    local_metadata_path.write_text(json.dumps({**local, "name": name, "version": entry.version}, indent=2, default=str))
    return entry
