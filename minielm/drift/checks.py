"""The drift checks: what each compares, its threshold in DriftConfig, and its Evidently metric and test.

One Evidently metric per check, each with one test; the snapshot's test status (SUCCESS / FAIL) is
what decides whether a check drifted. Every score reads "higher means more drift".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from evidently.metrics import ValueDrift
from evidently.tests import lte

from minielm.config import DriftConfig
from minielm.drift.metrics import MeanShift, QueryEmbeddingDrift

CheckKind = Literal["embedding", "distribution", "mean_shift"]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    family: str  # embeddings | descriptors | outcomes | rewrites (DriftConfig.checks)
    column: str  # the per-request column the metric reads
    kind: CheckKind
    requires: tuple[str, ...]  # window columns it needs
    threshold_field: str  # the DriftConfig field holding its threshold
    runbook_section: str  # anchor in docs/runbook.md
    what: str  # one line for on-call
    direction: str = "both"  # mean_shift only: which way of moving counts as drift


def _descriptor_checks(prefix: str) -> list[CheckSpec]:
    section = f"{prefix}-descriptors"
    return [
        CheckSpec(
            f"{prefix}_length",
            "descriptors",
            f"{prefix}_length",
            "distribution",
            (prefix,),
            "distribution_threshold",
            section,
            f"distribution of {prefix} length in characters",
        ),
        CheckSpec(
            f"{prefix}_tokens",
            "descriptors",
            f"{prefix}_tokens",
            "distribution",
            (prefix,),
            "distribution_threshold",
            section,
            f"distribution of {prefix} token count",
        ),
        CheckSpec(
            f"{prefix}_digit_unit_share",
            "descriptors",
            f"{prefix}_digit_unit_share",
            "mean_shift",
            (prefix,),
            "share_tolerance",
            section,
            f"mean share of {prefix} tokens that are numbers or units",
        ),
        CheckSpec(
            f"{prefix}_non_ascii_share",
            "descriptors",
            f"{prefix}_non_ascii_share",
            "mean_shift",
            (prefix,),
            "share_tolerance",
            section,
            f"mean share of non-ASCII characters in the {prefix}",
            "increase",
        ),
        CheckSpec(
            f"{prefix}_oov_share",
            "descriptors",
            f"{prefix}_oov_share",
            "mean_shift",
            (prefix,),
            "share_tolerance",
            section,
            f"mean share of {prefix} words the catalog never uses",
            "increase",
        ),
    ]


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "query_embeddings",
        "embeddings",
        "query_embedding",
        "embedding",
        ("query",),
        "embedding_threshold",
        "query-embeddings",
        "what shoppers search for (semantic drift of queries)",
    ),
    *_descriptor_checks("query"),
    *_descriptor_checks("rewrite"),
    CheckSpec(
        "ctr",
        "outcomes",
        "clicked",
        "mean_shift",
        ("clicks",),
        "ctr_tolerance",
        "outcomes",
        "click-through rate (share of requests with a click)",
        "decrease",
    ),
    CheckSpec(
        "reformulation_rate",
        "outcomes",
        "reformulated",
        "mean_shift",
        ("reformulated",),
        "reformulation_tolerance",
        "outcomes",
        "share of requests the shopper reformulated",
        "increase",
    ),
    CheckSpec(
        "zero_result_rate",
        "outcomes",
        "zero_results",
        "mean_shift",
        ("n_results",),
        "zero_result_tolerance",
        "outcomes",
        "share of requests whose search returned nothing",
        "increase",
    ),
    CheckSpec(
        "reward",
        "outcomes",
        "reward",
        "distribution",
        ("reward",),
        "reward_threshold",
        "outcomes",
        "distribution of the per-request reward",
    ),
    CheckSpec(
        "rewrite_identical_share",
        "rewrites",
        "rewrite_identical",
        "mean_shift",
        ("query", "rewrite"),
        "identical_rewrite_tolerance",
        "rewrite-behaviour",
        "share of rewrites identical to the query",
    ),
    CheckSpec(
        "rewrite_edit_distance",
        "rewrites",
        "rewrite_edit_distance",
        "distribution",
        ("query", "rewrite"),
        "distribution_threshold",
        "rewrite-behaviour",
        "distribution of query-to-rewrite edit distance",
    ),
)
CHECKS_BY_NAME = {check.name: check for check in CHECKS}


def enabled_checks(config: DriftConfig) -> list[CheckSpec]:
    return [check for check in CHECKS if check.family in config.checks]


def threshold(check: CheckSpec, config: DriftConfig) -> float:
    return float(getattr(config, check.threshold_field))


def evidently_metric(check: CheckSpec, config: DriftConfig):
    """The Evidently metric (with its one test) that decides this check."""
    limit = threshold(check, config)
    if check.kind == "embedding":
        return QueryEmbeddingDrift(
            column=check.column,
            method=config.embedding_method,
            pca_components=config.embedding_pca_components,
            similarity_floor=config.embedding_similarity_floor,
            tests=[lte(limit)],
        )
    if check.kind == "distribution":
        # Distance methods only (validated in DriftConfig): a p-value test would flag tiny, harmless
        # differences once windows hold tens of thousands of requests.
        return ValueDrift(column=check.column, method=config.distribution_method, threshold=limit)
    return MeanShift(column=check.column, direction=check.direction, tests=[lte(limit)])
