"""A rewriter model directory as a batch function queries -> rewrites, for evaluation and canaries, and the
serving options an RL candidate inherits from the production rewriter it was tuned from.

The batch function is the served rewriter, loaded as the server loads it (``settings.serving``: the generation
backend and the runaway cap; greedy, with the selective ``min_confidence`` threshold and the intent guard from
the directory), so RL is judged as shoppers would see it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minielm.config import ServingConfig
from minielm.models.rewriter import GUARD_FILE, METADATA_FILE

SERVING_METADATA = ("model_class", "min_confidence", "max_new_tokens")
"""What a saved rewriter's loaders read from its metadata.json (besides the version)."""


class DirRewriter:
    """Best rewrite per query from a saved rewriter directory (cached per query)."""

    def __init__(self, model_dir: Path, serving: ServingConfig) -> None:
        from minielm.models.loading import load_model_dir

        self.model_dir = Path(model_dir)
        self.rewriter = load_model_dir(self.model_dir, "rewriter", serving)
        self._cache: dict[str, str] = {}

    def __call__(self, queries: list[str]) -> list[str]:
        todo = sorted({q for q in queries if q not in self._cache})
        if todo:
            self._cache.update(zip(todo, (options[0] for options in self.rewriter.rewrite(todo))))
        return [self._cache[q] for q in queries]


RewriteFn = Callable[[list[str]], list[str]]


def carry_serving_options(production_dir: Path, candidate_dir: Path) -> dict[str, Any]:
    """Give an RL candidate the production rewriter's intent guard (``rewrite_guard.json``) and serving
    metadata (class, confidence threshold, token budget), and return that metadata.

    RL changes the weights, never the safety net around them: a candidate served without production's guard
    or threshold would be less safe than production however well it scores. A stale guard in the candidate is
    replaced; production without a guard leaves the candidate without one too (the same options, not more)."""
    production_dir, candidate_dir = Path(production_dir), Path(candidate_dir)
    source, target = production_dir / GUARD_FILE, candidate_dir / GUARD_FILE
    if source.is_file():
        shutil.copyfile(source, target)
    else:
        target.unlink(missing_ok=True)
    production = _read_metadata(production_dir)
    inherited = {key: production[key] for key in SERVING_METADATA if key in production}
    metadata_path = candidate_dir / METADATA_FILE
    metadata_path.write_text(json.dumps({**_read_metadata(candidate_dir), **inherited}, indent=2, default=str))
    return inherited


def _read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
