"""The relevance teacher's logits per (query, product text), kept on disk.

Labelling augmented pairs with a 135M-parameter teacher is the slowest step of the scaling curve
(tens of milliseconds a pair on CPU); student runs that vary the scale, the learning rate or the
loss weights label the same pairs again and again. :class:`CachedTeacher` answers pairs it has seen
from one ``.npz`` file and asks the teacher only for new ones. It caches raw logits, not
probabilities, so the soft-label temperature can change without relabelling.

The file belongs to one teacher: callers name it after the teacher's weights (:func:`cache_path`).
One process writes a cache file at a time (a later flush replaces the file with what its process knows);
readers may be many.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from minielm.logs import get_logger
from minielm.models.relevance_score import ESCI_CLASSES, expected_gain

log = get_logger(__name__)


def pair_key(query: str, product_text: str) -> str:
    """A stable key for one (query, product text) pair."""
    return hashlib.sha1(f"{query}\x1f{product_text}".encode()).hexdigest()[:20]


def cache_path(cache_dir: Path | str, teacher_dir: Path | str, max_length: int) -> Path:
    """The cache file of one trained teacher: its resolved dir, weights' size and mtime, and max length."""
    teacher_dir = Path(teacher_dir).resolve()
    weights = sorted(teacher_dir.glob("*.safetensors")) or [teacher_dir]
    identity = repr((str(teacher_dir), [(w.name, w.stat().st_size, w.stat().st_mtime) for w in weights], max_length))
    return Path(cache_dir) / f"teacher_pair_logits_{hashlib.sha1(identity.encode()).hexdigest()[:16]}.npz"


class CachedTeacher:
    """A :class:`~minielm.models.interfaces.RelevanceScorer` that remembers its teacher's logits on disk.

    ``teacher`` needs ``logits(queries, product_texts)`` (raw ESCI logits, shape (n, 4)). New logits are
    written every ``flush_every`` new pairs and by :meth:`flush`, atomically, so an interrupted labelling
    run keeps what it finished.
    """

    def __init__(self, teacher, path: Path | str, temperature: float = 1.0, flush_every: int = 512) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        self.teacher = teacher
        self.path = Path(path)
        self.temperature = temperature
        self.flush_every = flush_every
        self.version = getattr(teacher, "version", "unversioned")
        self.teacher_calls = 0
        self._index: dict[str, int] = {}
        self._logits: list[np.ndarray] = []
        self._keys: list[str] = []
        self._unsaved = 0
        if self.path.is_file():
            with np.load(self.path) as stored:
                keys, logits = stored["keys"].tolist(), stored["logits"].astype(np.float32)
            if logits.ndim != 2 or logits.shape != (len(keys), len(ESCI_CLASSES)):
                raise ValueError(f"{self.path}: logits of shape {logits.shape} for {len(keys)} keys")
            self._keys = list(keys)
            self._logits = list(logits)
            self._index = {k: i for i, k in enumerate(self._keys)}

    def __len__(self) -> int:
        return len(self._keys)

    def logits(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        if len(queries) != len(product_texts):
            raise ValueError(f"got {len(queries)} queries but {len(product_texts)} product texts")
        keys = [pair_key(q, t) for q, t in zip(queries, product_texts)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._index))
        if missing:
            where = {k: i for i, k in reversed(list(enumerate(keys)))}
            rows = [where[k] for k in missing]
            fresh = np.asarray(
                self.teacher.logits([queries[i] for i in rows], [product_texts[i] for i in rows]), dtype=np.float32
            )
            self.teacher_calls += 1
            for key, row in zip(missing, fresh):
                self._index[key] = len(self._keys)
                self._keys.append(key)
                self._logits.append(row)
            self._unsaved += len(missing)
            if self._unsaved >= self.flush_every:
                self.flush()
        if not keys:
            return np.zeros((0, len(ESCI_CLASSES)), dtype=np.float32)
        return np.stack([self._logits[self._index[k]] for k in keys]).astype(np.float32)

    def predict_proba(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        """``softmax(logits / temperature)``, as the teacher's own soft labels."""
        logits = torch.from_numpy(self.logits(queries, product_texts))
        return torch.softmax(logits / self.temperature, dim=-1).numpy().astype(np.float32)

    def score(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        return expected_gain(self.predict_proba(queries, product_texts))

    def flush(self) -> None:
        """Write every pair seen so far (tmp file + rename: a reader never sees half a file)."""
        if not self._unsaved and self.path.is_file():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        logits = np.stack(self._logits) if self._logits else np.zeros((0, len(ESCI_CLASSES)), np.float32)
        np.savez(tmp, keys=np.asarray(self._keys, dtype="U20"), logits=logits.astype(np.float32))
        os.replace(tmp, self.path)
        log.info("teacher labels cached", pairs=len(self._keys), path=str(self.path))
        self._unsaved = 0
