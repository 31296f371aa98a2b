"""Students against their teachers on the held-out split, and the share of the teacher's gain kept.

Rewriter: relevant products per query @k (and nDCG, recall, zero-result rate) after rewriting with
raw / oracle / teacher / student; the student *keeps* ``(student - raw) / (teacher - raw)`` of the
teacher's gain. Relevance: accuracy, macro-F1 and nDCG@k of teacher and student on labelled pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from minielm.evaluation import oracle_queries, quality_report, raw_queries
from minielm.models.interfaces import QueryRewriter, RelevanceScorer
from minielm.teachers.metrics import relevance_metrics

GAIN_METRIC = "relevant_per_query"


def gain_share(student: float, teacher: float, raw: float) -> float | None:
    """Fraction of the teacher's gain over raw that the student keeps (None when the teacher gains nothing)."""
    teacher_gain = teacher - raw
    if teacher_gain <= 0:
        return None
    return (student - raw) / teacher_gain


def evaluate_rewriters(
    index,
    examples: pd.DataFrame,
    teacher: QueryRewriter,
    student: QueryRewriter,
    k: int,
    substitute_is_relevant: bool = False,
    max_queries: int | None = None,
    baseline: QueryRewriter | None = None,
) -> dict[str, Any]:
    """raw / baseline / oracle / teacher / student on the same queries: a
    :func:`minielm.evaluation.quality_report` (per-system metrics, per noise class, seen vs unseen
    noise, harm rate in ``harm``, examples) without per-query detail, plus the gain share."""
    if max_queries is not None:
        keep = sorted(raw_queries(examples))[:max_queries]
        examples = examples[examples["query_id"].astype(str).isin(keep)]
    systems: dict[str, Any] = {"raw": raw_queries(examples)}
    if baseline is not None:
        systems["baseline"] = baseline
    if "canonical_query" in examples.columns:
        systems["oracle"] = oracle_queries(examples)
    systems["teacher"] = teacher
    systems["student"] = student
    report = quality_report(index, examples, systems, k=k, substitute_is_relevant=substitute_is_relevant)
    report.pop("per_query")
    metrics = report["systems"]
    report["student_keeps_teacher_gain"] = gain_share(
        metrics["student"][GAIN_METRIC], metrics["teacher"][GAIN_METRIC], metrics["raw"][GAIN_METRIC]
    )
    return report


def evaluate_relevance(frame: pd.DataFrame, scorers: Mapping[str, RelevanceScorer], k: int) -> dict[str, Any]:
    """Classification and ranking metrics per scorer on labelled (query, product_text, esci_label) pairs."""
    required = {"query_id", "query", "product_text", "esci_label"}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise ValueError(f"relevance evaluation frame lacks columns {missing}")
    if frame.empty:
        raise ValueError("relevance evaluation frame is empty")
    out: dict[str, Any] = {"k": k, "systems": {}}
    for name, scorer in scorers.items():
        queries, texts = frame["query"].tolist(), frame["product_text"].tolist()
        probabilities = scorer.predict_proba(queries, texts)
        scores = scorer.score(queries, texts)
        out["systems"][name] = relevance_metrics(frame, probabilities, scores, k=k)
    return out


def format_quality_table(rewriters: Mapping[str, Any] | None, relevance: Mapping[str, Any] | None) -> str:
    """The teacher / student / raw / oracle table the demo and the pipeline print."""
    lines: list[str] = []
    if rewriters:
        k = rewriters["k"]
        lines.append(f"rewriter, {rewriters['n_queries']} held-out queries, k={k}")
        header = (
            f"  {'system':<9} {'relevant@' + str(k):>12} {'nDCG@' + str(k):>9} {'recall@' + str(k):>10} {'zero-res':>9}"
        )
        lines += [header, "  " + "-" * (len(header) - 2)]
        for name, m in rewriters["systems"].items():
            lines.append(
                f"  {name:<9} {m['relevant_per_query']:>12.3f} {m['ndcg']:>9.3f} {m['recall']:>10.3f} "
                f"{m['zero_result_rate']:>9.1%}"
            )
        share = rewriters.get("student_keeps_teacher_gain")
        lines.append(
            "  student keeps "
            + (f"{share:.1%}" if share is not None else "n/a (teacher gains nothing)")
            + " of the teacher's gain over raw"
        )
    if relevance:
        k = relevance["k"]
        lines.append(f"relevance, held-out labelled pairs, k={k}")
        header = f"  {'system':<9} {'accuracy':>9} {'macro-F1':>9} {'nDCG@' + str(k):>9} {'pairs':>7}"
        lines += [header, "  " + "-" * (len(header) - 2)]
        for name, m in relevance["systems"].items():
            lines.append(
                f"  {name:<9} {m['accuracy']:>9.3f} {m['macro_f1']:>9.3f} {m[f'ndcg@{k}']:>9.3f} {m['n_pairs']:>7d}"
            )
    return "\n".join(lines)
