"""Small deterministic models implementing the serving protocols, saved as real model directories.

They let the serving tests exercise loading (by ``metadata.json`` ``model_class``), registry stages,
HTTP, Feast and Kafka without training anything. Their outputs are computable, so tests can assert them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minielm.features.keys import normalize_query

SPELLING = {"hedphones": "headphones", "wireles": "wireless", "shoos": "shoes", "blu": "blue"}


class SpellingRewriter:
    """Rewrites by a word table; ``num_return`` variants append ' (i)' after the first."""

    def __init__(self, table: dict[str, str], version: str = "standin") -> None:
        self.table = table
        self.version = version

    @classmethod
    def load(cls, directory: Path | str) -> SpellingRewriter:
        config = json.loads((Path(directory) / "spelling.json").read_text())
        return cls(config["table"], config.get("version", "standin"))

    def save(self, directory: Path | str, model_class: str = "tests.serving_standins:SpellingRewriter") -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "spelling.json").write_text(json.dumps({"table": self.table, "version": self.version}))
        (directory / "metadata.json").write_text(json.dumps({"model_class": model_class}))
        return directory

    def fix(self, query: str) -> str:
        return " ".join(self.table.get(word, word) for word in normalize_query(query).split())

    def rewrite(self, queries: Sequence[str], num_return: int = 1, do_sample: bool = False) -> list[list[str]]:
        return [[self.fix(q)] + [f"{self.fix(q)} ({i})" for i in range(1, num_return)] for q in queries]


class OverlapScorer:
    """Relevance = share of query words found in the product text."""

    def __init__(self, version: str = "standin") -> None:
        self.version = version

    @classmethod
    def load(cls, directory: Path | str) -> OverlapScorer:
        return cls(json.loads((Path(directory) / "overlap.json").read_text())["version"])

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "overlap.json").write_text(json.dumps({"version": self.version}))
        (directory / "metadata.json").write_text(json.dumps({"model_class": "tests.serving_standins:OverlapScorer"}))
        return directory

    def score(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        out = []
        for query, text in zip(queries, product_texts):
            words = set(normalize_query(query).split())
            found = set(normalize_query(text).replace("|", " ").split())
            out.append(len(words & found) / max(len(words), 1))
        return np.asarray(out, dtype=np.float32)

    def predict_proba(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        s = self.score(queries, product_texts)
        rest = 1.0 - s
        return np.stack([s, rest * 0.3, rest * 0.2, rest * 0.5], axis=1)
