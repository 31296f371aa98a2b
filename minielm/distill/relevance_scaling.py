"""The Walmart experiment: the student with more and more teacher-labelled augmented pairs.

A *labelled set* (the judged pairs of some train queries) is turned into triples by pairing the judged
products of each query; an *augmented pool* is drawn from other train queries and the catalog
(:func:`minielm.distill.augment.build_triples`). Every triple is labelled by the teacher only (no gold
label reaches the student). For each scale m the student trains from the same initial weights on the
labelled triples plus the first ``m * labelled pairs`` augmented pairs (nested prefixes, so a larger
set contains the smaller), for the same number of passes over its data ("same steps per pair").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from minielm.distill.augment import AugmentedDataError

LABELLED_SOURCE = "labelled"


def labelled_set_triples(pairs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Triples (query, product_a, product_b, source) that use every judged pair of each query once.

    The judged products of a query are shuffled and paired neighbour by neighbour; an odd one out is
    paired with the query's first product. Queries with a single judged product give no triple.
    """
    missing = sorted({"query_id", "query", "product_id"} - set(pairs.columns))
    if missing:
        raise AugmentedDataError(f"labelled pairs lack columns {missing}")
    if pairs.empty:
        raise AugmentedDataError("labelled pairs: 0 rows, nothing to build triples from")
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, str]] = []
    for _, group in pairs.groupby("query_id", sort=True):
        products = group["product_id"].astype(str).tolist()
        if len(products) < 2:
            continue
        order = [products[i] for i in rng.permutation(len(products))]
        if len(order) % 2:
            order.append(order[0])
        query = str(group["query"].iloc[0])
        rows += [(query, order[i], order[i + 1], LABELLED_SOURCE) for i in range(0, len(order), 2)]
    if not rows:
        raise AugmentedDataError("labelled pairs: no query has two judged products, so no triple can be built")
    return pd.DataFrame(rows, columns=["query", "product_a", "product_b", "source"])


def pairs_in(triples: pd.DataFrame) -> int:
    """Distinct (query, product) pairs a set of triples covers."""
    a = triples[["query", "product_a"]].set_axis(["query", "product"], axis=1)
    b = triples[["query", "product_b"]].set_axis(["query", "product"], axis=1)
    return int(len(pd.concat([a, b]).drop_duplicates()))


def nested_augmented_sets(
    augmented: pd.DataFrame, labelled_pairs: int, scales: Sequence[int], seed: int = 0
) -> dict[int, pd.DataFrame]:
    """For each scale m, the first ``m * labelled_pairs / 2`` triples of one shuffled pool (2 pairs a triple).

    Fails, naming the count, when the pool is too small for the largest scale: a smaller set would
    silently measure something else.
    """
    if augmented is None or augmented.empty:
        raise AugmentedDataError("augmented data is empty: 0 augmented triples for the scaling curve")
    if any(m < 0 for m in scales):
        raise AugmentedDataError(f"scales must be >= 0, got {list(scales)}")
    shuffled = augmented.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    needed = {m: math.ceil(m * labelled_pairs / 2) for m in scales}
    if max(needed.values()) > len(shuffled):
        raise AugmentedDataError(
            f"augmented data has {len(shuffled)} triples but scale {max(scales)}x of {labelled_pairs} labelled pairs "
            f"needs {max(needed.values())}: draw more triples per query or use more queries"
        )
    return {m: shuffled.iloc[:n].reset_index(drop=True) for m, n in needed.items()}


def steps_for(n_triples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_triples`` at ``batch_size`` triples a step."""
    return max(1, math.ceil(epochs * n_triples / batch_size))


@dataclass
class ScalePoint:
    scale: int
    augmented_pairs: int
    train_triples: int
    steps: int
    train_seconds: float
    metrics: dict

    def as_dict(self, k: int) -> dict:
        return {
            "scale": self.scale,
            "augmented_pairs": self.augmented_pairs,
            "train_triples": self.train_triples,
            "steps": self.steps,
            "train_seconds": round(self.train_seconds, 1),
            f"ndcg_at_{k}": self.metrics[f"ndcg@{k}"],
            "macro_f1": self.metrics["macro_f1"],
            "accuracy": self.metrics["accuracy"],
        }


def run_scaling(
    labelled: pd.DataFrame,
    augmented_sets: Mapping[int, pd.DataFrame],
    train_and_evaluate: Callable[[pd.DataFrame, int, int], tuple[dict, float]],
    batch_size: int,
    epochs: float,
) -> list[ScalePoint]:
    """Train one student per scale; ``train_and_evaluate(triples, steps, scale) -> (metrics, seconds)``.

    ``labelled`` and the augmented sets are teacher-labelled triples (pos/neg columns).
    """
    points = []
    for scale in sorted(augmented_sets):
        extra = augmented_sets[scale]
        triples = pd.concat([labelled, extra], ignore_index=True)
        steps = steps_for(len(triples), batch_size, epochs)
        metrics, seconds = train_and_evaluate(triples, steps, scale)
        augmented_pairs = pairs_in(extra.rename(columns={"pos_product_id": "product_a", "neg_product_id": "product_b"}))
        points.append(ScalePoint(scale, augmented_pairs if len(extra) else 0, len(triples), steps, seconds, metrics))
    return points
