"""What every rewriter and relevance model offers, so serving, feedback, RL and drift need not care
whether a teacher or a student sits behind them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class QueryRewriter(Protocol):
    """Turns noisy shopper queries into search-friendly rewrites."""

    version: str

    def rewrite(self, queries: Sequence[str], num_return: int = 1, do_sample: bool = False) -> list[list[str]]:
        """For each query, ``num_return`` rewrites (best first)."""
        ...


@runtime_checkable
class RelevanceScorer(Protocol):
    """Judges how relevant a product is to a query (ESCI: Exact, Substitute, Complement, Irrelevant)."""

    version: str

    def predict_proba(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        """Shape (n, 4): probabilities over E, S, C, I for each (query, product text) pair."""
        ...

    def score(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        """Shape (n,): a scalar relevance in [0, 1] for each pair (higher is more relevant)."""
        ...


def rewrite_with_scores(
    model: QueryRewriter, queries: list[str], num_return: int
) -> list[list[tuple[str, float | None]]]:
    """What serving answers: ``num_return`` rewrites per query with the model's own sequence scores when it
    offers them (``rewrite_with_scores``), else ``None`` scores."""
    if hasattr(model, "rewrite_with_scores"):
        return [
            [(text, float(score)) for text, score in row]
            for row in model.rewrite_with_scores(queries, num_return=num_return)
        ]
    return [[(text, None) for text in row] for row in model.rewrite(queries, num_return=num_return)]
