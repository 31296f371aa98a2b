"""Two Evidently (new API) metrics the built-in set lacks for this job.

- :class:`QueryEmbeddingDrift`: drift of an embedding column, by the rise in the share of novel
  queries (no similar reference query; our default, readable by on-call) or by one of Evidently's
  cheap drift methods (domain classifier, mean distance, MMD). Evidently's own ``EmbeddingsDrift``
  always draws a t-SNE map of up to 5,000 points, which alone costs tens of seconds on two cores;
  this metric draws a PCA map instead.
- :class:`MeanShift`: how far a column's mean moved between reference and current (a rate such as
  CTR, or a mean share), optionally in one direction only: a CTR that rises is not an incident.
  "Higher means more drift" keeps every check's score comparable to its threshold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from evidently import Dataset
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.legacy.metrics.data_drift.embedding_drift_methods import (
    DistanceDriftMethod,
    DriftMethod,
    MMDDriftMethod,
    ModelDriftMethod,
)
from evidently.legacy.renderers.html_widgets import CounterData, WidgetSize, counter, plotly_figure
from evidently.legacy.utils.visualizations import get_gaussian_kde, plot_contour_single
from evidently.metrics.column_statistics import distribution
from sklearn.decomposition import PCA


class QueryEmbeddingDrift(SingleValueMetric):
    """Drift score of the vectors in ``column`` (rows holding None are not in the sample)."""

    column: str
    method: Literal["novelty", "model", "distance", "mmd"] = "novelty"
    pca_components: int | None = None
    similarity_floor: float = 0.4


def novelty_score(current: np.ndarray, reference: np.ndarray, similarity_floor: float) -> float:
    """Rise in the share of "novel" queries: those whose most similar reference query has a cosine
    similarity below ``similarity_floor``.

    The baseline is the reference itself: its distinct queries are split in two halves, each half is
    scored against the other, and the current window against each half, so a current window from
    the same distribution scores about 0 whatever the floor (repeats of reference queries in the
    current window only lower its score). Vectors are unit length.
    """
    distinct = np.unique(reference, axis=0)
    half_a, half_b = distinct[0::2], distinct[1::2]
    if len(half_a) == 0 or len(half_b) == 0:
        raise ValueError("novelty needs at least two distinct reference queries")

    def novel_share(rows: np.ndarray, half: np.ndarray) -> float:
        return float(np.mean(np.max(rows @ half.T, axis=1) < similarity_floor))

    baseline = (novel_share(half_b, half_a) + novel_share(half_a, half_b)) / 2
    return max(0.0, (novel_share(current, half_a) + novel_share(current, half_b)) / 2 - baseline)


def drift_method(name: str, pca_components: int | None) -> DriftMethod:
    """Evidently's method; the decision is ours (the test on the score), so its own threshold is unused."""
    if name == "model":
        return ModelDriftMethod(pca_components=pca_components)
    if name == "distance":
        return DistanceDriftMethod(pca_components=pca_components)
    if name == "mmd":
        return MMDDriftMethod(pca_components=pca_components)
    raise ValueError(f"drift.embedding_method: expected model, distance or mmd, got {name!r}")


def _vectors(dataset: Dataset, column: str) -> np.ndarray:
    values = [v for v in dataset.as_dataframe()[column].tolist() if v is not None]
    if not values:
        raise ValueError(f"no embedded rows in column {column!r}")
    return np.stack(values).astype(np.float64)


class QueryEmbeddingDriftCalculation(SingleValueCalculation[QueryEmbeddingDrift]):
    def calculate(self, context, current_data: Dataset, reference_data: Dataset | None):
        if reference_data is None:
            raise ValueError("QueryEmbeddingDrift needs reference data")
        current = _vectors(current_data, self.metric.column)
        reference = _vectors(reference_data, self.metric.column)
        if self.metric.method == "novelty":
            score = novelty_score(current, reference, self.metric.similarity_floor)
        else:
            components = self.metric.pca_components
            if components is not None:
                components = min(components, len(reference), len(current), reference.shape[1])
            method = drift_method(self.metric.method, components)
            score, _, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
        result = self.result(float(score))
        result.widget = [
            counter(
                counters=[
                    CounterData(
                        f"{score:.3f}",
                        f"{self.display_name()} ({len(reference)} reference vs {len(current)} current queries)",
                    )
                ]
            ),
            plotly_figure(
                title="Query embeddings, first two principal components of the reference",
                figure=_contour_map(reference, current),
                size=WidgetSize.FULL,
            ),
        ]
        return result

    def display_name(self) -> str:
        return f"Embedding drift of '{self.metric.column}' ({self.metric.method} method)"


def _contour_map(reference: np.ndarray, current: np.ndarray):
    pca = PCA(n_components=2, svd_solver="randomized", random_state=0).fit(reference)
    ref_2d, cur_2d = pca.transform(reference), pca.transform(current)
    ref_density, _, _ = get_gaussian_kde(ref_2d[:, 0], ref_2d[:, 1])
    cur_density, _, _ = get_gaussian_kde(cur_2d[:, 0], cur_2d[:, 1])
    return plot_contour_single(cur_density, ref_density, "component 1", "component 2")


class MeanShift(SingleValueMetric):
    """How far a column's mean moved: |change|, or only a rise ("increase") or only a fall ("decrease")."""

    column: str
    direction: Literal["both", "increase", "decrease"] = "both"


class MeanShiftCalculation(SingleValueCalculation[MeanShift]):
    def calculate(self, context, current_data: Dataset, reference_data: Dataset | None):
        if reference_data is None:
            raise ValueError("MeanShift needs reference data")
        current = current_data.column(self.metric.column)
        reference = reference_data.column(self.metric.column)
        current_mean, reference_mean = float(current.data.mean()), float(reference.data.mean())
        change = current_mean - reference_mean
        if self.metric.direction == "increase":
            change = max(change, 0.0)
        elif self.metric.direction == "decrease":
            change = max(-change, 0.0)
        result = self.result(abs(change))
        result.widget = distribution(
            f"Mean of '{self.metric.column}': current {current_mean:.3f}, reference {reference_mean:.3f}",
            current,
            reference,
        )
        return result

    def display_name(self) -> str:
        moved = {"both": "Change", "increase": "Rise", "decrease": "Fall"}[self.metric.direction]
        return f"{moved} of the mean of '{self.metric.column}'"
