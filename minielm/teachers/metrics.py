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


def relevance_metrics(frame: pd.DataFrame, probabilities: np.ndarray, scores: np.ndarray, k: int = 10) -> dict:
    """accuracy, macro-F1, log loss, nDCG@k (judged products ranked by score) and the majority baseline."""
    index = {c: i for i, c in enumerate(ESCI_CLASSES)}
    truth = frame["esci_label"].map(index).to_numpy()
    predicted = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(len(truth)), truth], 1e-12, 1.0)
    ndcgs = []
    for _, rows in frame.assign(_score=scores).groupby("query_id", sort=False):
        ranked = rows.sort_values("_score", ascending=False)["esci_label"].tolist()
        ndcgs.append(ndcg_at_k(ranked, rows["esci_label"].tolist(), k))
    majority = np.bincount(truth, minlength=len(ESCI_CLASSES)).max() / max(1, len(truth))
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": macro_f1(truth, predicted),
        "log_loss": float(-np.mean(np.log(picked))),
        f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else 0.0,
        "majority_accuracy": float(majority),
        "n_pairs": int(len(truth)),
        "n_queries": len(ndcgs),
    }
