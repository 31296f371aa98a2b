"""The non-neural relevance baselines a relevance teacher must beat: majority class and BM25 score.

* Majority class: always the most common label of the *test* pairs, the strongest constant answer
  (an upper bound for any constant predictor; its accuracy and macro-F1. It ranks nothing, so no nDCG).
* BM25: the product's BM25 score for the query in the catalog index ranks the judged products
  (nDCG@k); for classification the score relative to the query's best catalog match is cut into
  E/S/C/I by three thresholds fitted on the train split to maximise macro-F1 (ordinal: a higher
  score never gets a lower class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from minielm.errors import InputError
from minielm.models.relevance_score import ESCI_CLASSES
from minielm.teachers.metrics import macro_f1, relevance_metrics

THRESHOLD_GRID = 24  # candidate cut points (quantiles of the train scores) per threshold


def bm25_pair_scores(index, queries: Sequence[str], product_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(raw BM25 score, score / the query's best catalog score) for each (query, product id) pair.

    Products that share no term with the query score 0.
    """
    queries, product_ids = [str(q) for q in queries], [str(p) for p in product_ids]
    if len(queries) != len(product_ids):
        raise InputError(f"got {len(queries)} queries but {len(product_ids)} product ids")
    unique = list(dict.fromkeys(queries))
    hits = index.search_with_scores(unique, k=len(index))
    by_query = {q: dict(h) for q, h in zip(unique, hits)}
    raw = np.array([by_query[q].get(p, 0.0) for q, p in zip(queries, product_ids)], dtype=np.float64)
    best = np.array([max(by_query[q].values(), default=0.0) for q in queries], dtype=np.float64)
    relative = np.divide(raw, best, out=np.zeros_like(raw), where=best > 0)
    return raw, relative


def _classify(relative: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Class index per score: >= t_E -> E, >= t_S -> S, >= t_C -> C, else I."""
    t_e, t_s, t_c = thresholds
    return np.where(relative >= t_e, 0, np.where(relative >= t_s, 1, np.where(relative >= t_c, 2, 3)))


@dataclass
class BM25Baseline:
    """BM25 ranking plus ordinal thresholds on the relative score (fitted by :meth:`fit`)."""

    thresholds: tuple[float, float, float]

    @classmethod
    def fit(cls, relative: np.ndarray, labels: Sequence[str]) -> BM25Baseline:
        """Thresholds that maximise macro-F1 on the given (train) pairs, searched over score quantiles."""
        index = {c: i for i, c in enumerate(ESCI_CLASSES)}
        truth = np.array([index[label] for label in labels])
        grid = np.unique(np.quantile(relative, np.linspace(0.0, 1.0, THRESHOLD_GRID)))
        best, best_f1 = (1.0, 0.5, 0.0), -1.0
        for t_c, t_s, t_e in combinations(grid, 3):  # ascending: t_c < t_s < t_e
            f1 = macro_f1(truth, _classify(relative, (t_e, t_s, t_c)))
            if f1 > best_f1:
                best, best_f1 = (float(t_e), float(t_s), float(t_c)), f1
        return cls(thresholds=best)

    def probabilities(self, relative: np.ndarray) -> np.ndarray:
        """One-hot class 'probabilities' (what the metrics read for accuracy and macro-F1)."""
        return np.eye(len(ESCI_CLASSES))[_classify(relative, self.thresholds)]


def baseline_metrics(
    index, train: pd.DataFrame, test: pd.DataFrame, k: int = 10
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(majority-class metrics, BM25 metrics) on ``test``; BM25's thresholds are fitted on ``train`` only.

    Frames: query_id, query, product_id, esci_label (as :func:`minielm.teachers.data.relevance_frame`).
    """
    majority_label = test["esci_label"].value_counts().idxmax()
    one_hot = np.zeros((len(test), len(ESCI_CLASSES)))
    one_hot[:, ESCI_CLASSES.index(majority_label)] = 1.0
    majority = relevance_metrics(test, one_hot, np.zeros(len(test)), k=k)
    majority = {"label": majority_label, **{m: majority[m] for m in ("accuracy", "macro_f1", "n_pairs")}}
    _, train_relative = bm25_pair_scores(index, train["query"], train["product_id"])
    model = BM25Baseline.fit(train_relative, train["esci_label"].tolist())
    test_raw, test_relative = bm25_pair_scores(index, test["query"], test["product_id"])
    bm25 = relevance_metrics(test, model.probabilities(test_relative), test_raw, k=k)
    bm25.pop("log_loss")
    bm25["thresholds"] = list(model.thresholds)
    return majority, bm25


def split_baselines(data, index, eval_split: str = "test", limit: int = 0, seed: int = 0, k: int = 10):
    """(majority, BM25) on ``eval_split``'s pairs (the same selection a teacher run evaluates on for equal
    ``limit`` and ``seed``), BM25's thresholds fitted on the train split."""
    from minielm.teachers.data import load_teacher_data, product_texts, relevance_frame

    data = load_teacher_data(data)
    texts = product_texts(data)
    train = relevance_frame(data, "train", texts)
    held_out = relevance_frame(data, eval_split, texts, limit=limit, seed=seed)
    return baseline_metrics(index, train, held_out, k=k)
