"""The model registry on S3: ``models/<name>/<version>/`` plus stage pointers.

A version holds the exported files (weights, tokenizer, config) and ``metadata.json`` (metrics,
data hash, parent version, pipeline run). A stage (``candidate``, ``production``) is a pointer
object ``models/<name>/stages/<stage>.json`` naming a version and the one it replaced, so a
promotion is one atomic PUT and a rollback is another.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.storage import ObjectNotFound, ObjectStore

log = get_logger(__name__)

STAGES = ("candidate", "production")
METADATA_FILE = "metadata.json"


class RegistryError(InputError):
    """A model, version or stage does not exist, or a request to the registry is invalid."""


@dataclass
class ModelVersion:
    name: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"models/{self.name}/{self.version}"


class ModelRegistry:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def _stage_key(self, name: str, stage: str) -> str:
        if stage not in STAGES:
            raise RegistryError(f"stage must be one of {STAGES}, got {stage!r}")
        return f"models/{name}/stages/{stage}.json"

    def register(
        self, name: str, local_dir: Path, metadata: dict[str, Any] | None = None, version: str | None = None
    ) -> ModelVersion:
        """Upload a saved model directory as a new version; metadata.json is written last. A rewriter gets
        its CTranslate2 export first, so the registry holds both."""
        local_dir = Path(local_dir)
        if not local_dir.is_dir() or not any(local_dir.iterdir()):
            raise RegistryError(f"model directory {local_dir} is missing or empty")
        from minielm.models.ct2_rewriter import export_for_serving  # torch-heavy: only when registering

        export_for_serving(local_dir)  # the server loads the CTranslate2 copy stored beside the weights
        version = version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**6:06d}"
        entry = ModelVersion(
            name, version, {**(metadata or {}), "name": name, "version": version, "registered_at": time.time()}
        )
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != METADATA_FILE):
            self.store.client.upload_file(
                str(path), self.store.bucket, f"{entry.prefix}/{path.relative_to(local_dir).as_posix()}"
            )
        self.store.put_json(f"{entry.prefix}/{METADATA_FILE}", entry.metadata)
        log.info("model registered", name=name, version=version)
        return entry

    def get(self, name: str, version: str) -> ModelVersion:
        try:
            metadata = self.store.get_json(f"models/{name}/{version}/{METADATA_FILE}")
        except ObjectNotFound:
            raise RegistryError(f"model {name} has no version {version!r}") from None
        return ModelVersion(name, version, metadata)

    def versions(self, name: str) -> list[str]:
        suffix = f"/{METADATA_FILE}"
        return sorted(
            k[len(f"models/{name}/") : -len(suffix)]
            for k in self.store.list_keys(f"models/{name}/")
            if k.endswith(suffix) and "/stages/" not in k
        )

    def stage(self, name: str, stage: str) -> ModelVersion | None:
        pointer = self.store.read_pointer(self._stage_key(name, stage))
        return self.get(name, pointer["version"]) if pointer else None

    def stage_pointer(self, name: str, stage: str) -> dict[str, Any] | None:
        """The stage's pointer object (version, previous, history, reason, updated_at), or None."""
        return self.store.read_pointer(self._stage_key(name, stage))

    def stage_version(self, name: str, stage: str) -> str | None:
        """The version a stage points at, from one small read (what a serving poll costs)."""
        pointer = self.stage_pointer(name, stage)
        return pointer["version"] if pointer else None

    def promote(self, name: str, version: str, stage: str, reason: str = "") -> dict[str, Any]:
        """Point the stage at the version in one PUT; remembers the previous version for rollback."""
        self.get(name, version)
        previous = self.store.read_pointer(self._stage_key(name, stage))
        history = ([previous["version"]] + previous.get("history", []))[:20] if previous else []
        pointer = {
            "version": version,
            "previous": previous["version"] if previous else None,
            "history": history,
            "reason": reason,
            "updated_at": time.time(),
        }
        self.store.write_pointer(self._stage_key(name, stage), pointer)
        log.info("stage updated", name=name, stage=stage, version=version, previous=pointer["previous"], reason=reason)
        return pointer

    def rollback(self, name: str, stage: str = "production") -> dict[str, Any]:
        """Point the stage back at the version it held before the last promotion."""
        pointer = self.store.read_pointer(self._stage_key(name, stage))
        if not pointer or not pointer.get("history"):
            raise RegistryError(f"{name}/{stage} has no previous version to roll back to")
        target, *rest = pointer["history"]
        new_pointer = {
            "version": target,
            "previous": pointer["version"],
            "history": rest,
            "reason": f"rollback from {pointer['version']}",
            "updated_at": time.time(),
        }
        self.store.write_pointer(self._stage_key(name, stage), new_pointer)
        log.info("stage rolled back", name=name, stage=stage, version=target, was=pointer["version"])
        return new_pointer

    def download(self, name: str, version: str, dest: Path) -> Path:
        """Fetch a version's files into dest (skipped when dest already holds that version)."""
        dest = Path(dest)
        marker = dest / METADATA_FILE
        if marker.is_file() and json.loads(marker.read_text()).get("version") == version:
            return dest
        try:
            self.store.download_dir(f"models/{name}/{version}", dest)
        except ObjectNotFound:
            raise RegistryError(f"model {name} has no files for version {version!r}") from None
        return dest
