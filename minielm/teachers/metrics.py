"""Classification and ranking metrics of the relevance teacher on held-out labelled pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from minielm.evaluation import ndcg_at_k
from minielm.models.relevance_teacher import ESCI_CLASSES


def macro_f1(truth: np.ndarray, predicted: np.ndarray, n_classes: int = len(ESCI_CLASSES)) -> float:
    """Unweighted mean of per-class F1 over the classes present in truth or predictions."""
    scores = []
    for label in range(n_classes):
        tp = int(np.sum((predicted == label) & (truth == label)))
        fp = int(np.sum((predicted == label) & (truth != label)))
        fn = int(np.sum((predicted != label) & (truth == label)))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def per_query_ndcg(frame: pd.DataFrame, scores: np.ndarray, k: int = 10) -> np.ndarray:
    """nDCG@k of each query's judged products ranked by ``scores``, in order of the queries' first rows."""
    ndcgs = []
    for _, rows in frame.assign(_score=scores).groupby("query_id", sort=False):
        ranked = rows.sort_values("_score", ascending=False)["esci_label"].tolist()
        ndcgs.append(ndcg_at_k(ranked, rows["esci_label"].tolist(), k))
    return np.asarray(ndcgs, dtype=np.float64)


def relevance_metrics(frame: pd.DataFrame, probabilities: np.ndarray, scores: np.ndarray, k: int = 10) -> dict:
    """accuracy, macro-F1, log loss, nDCG@k (judged products ranked by score) and the majority baseline."""
    index = {c: i for i, c in enumerate(ESCI_CLASSES)}
    truth = frame["esci_label"].map(index).to_numpy()
    predicted = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(len(truth)), truth], 1e-12, 1.0)
    ndcgs = per_query_ndcg(frame, scores, k)
    majority = np.bincount(truth, minlength=len(ESCI_CLASSES)).max() / max(1, len(truth))
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": macro_f1(truth, predicted),
        "log_loss": float(-np.mean(np.log(picked))),
        f"ndcg@{k}": float(np.mean(ndcgs)) if len(ndcgs) else 0.0,
        "majority_accuracy": float(majority),
        "n_pairs": int(len(truth)),
        "n_queries": len(ndcgs),
    }


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> dict:
    """Mean of a - b over paired items (e.g. queries) with a bootstrap 95% interval, and the win/loss/tie counts.

    Tells whether a gap between two models on one test set is larger than the test set's own noise.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"expected two equal-length 1-D arrays of paired values, got {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return {
        "mean": float(diff.mean()),
        "ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
        "wins": int((diff > 1e-12).sum()),
        "losses": int((diff < -1e-12).sum()),
        "ties": int((np.abs(diff) <= 1e-12).sum()),
        "items": int(len(diff)),
        "resamples": resamples,
    }
