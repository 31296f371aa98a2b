"""When a rewriter should leave a query alone: its confidence threshold and its harm rate.

The served rewriter returns the query unchanged (a cascade: its front end's rewrite, the *fallback*)
when its greedy rewrite is less confident than ``min_confidence`` or fails the intent guard
(:mod:`minielm.models.rewrite_guard`). The threshold is
chosen on a validation split: the one with the most relevant products per query among those whose
harm rate stays within the target. A query counts as *harmed* when the served text differs from the
query and either loses a content word or retrieves fewer relevant products than the query itself.
Harm is measured on the queries whose right answer is to leave them alone (clean and out-of-catalog
queries, from the ``noise`` column or ``query == canonical_query``); data without either (real
ESCI) measures it on every query. When no threshold below "never rewrite" meets the target, the
rewriter abstains (threshold above 1) and the calibration says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from minielm.data.esci import CANONICAL_QUERY, NOISE, QUERY, QUERY_ID
from minielm.logs import get_logger
from minielm.models.prompts import clean_text
from minielm.models.rewrite_guard import lost_content_words

log = get_logger(__name__)

NEVER_REWRITE = 1.01  # above any probability: the rewriter always keeps the query
LEAVE_ALONE_NOISE = frozenset({"", "clean", "none", "out_of_catalog", "out_of_domain"})


def leave_alone_ids(examples: pd.DataFrame) -> tuple[set[str], str]:
    """Query ids whose right rewrite is the query itself, and how they were found."""
    first = examples.drop_duplicates(QUERY_ID)
    ids = first[QUERY_ID].astype(str)
    if NOISE in first.columns:
        noise = first[NOISE].fillna("").astype(str).str.strip().str.lower()
        return set(ids[noise.isin(LEAVE_ALONE_NOISE)]), "clean and out-of-catalog queries (noise column)"
    if CANONICAL_QUERY in first.columns and first[CANONICAL_QUERY].notna().all():
        same = first[QUERY].map(clean_text).str.lower() == first[CANONICAL_QUERY].fillna("").map(clean_text).str.lower()
        return set(ids[same]), "queries equal to their canonical rewrite"
    return set(ids), "every query (the data marks no clean queries)"


def is_harmed(query: str, served: str, relevant_query: float, relevant_served: float) -> bool:
    """The served text changed the query and lost a content word or relevant products."""
    if clean_text(served).lower() == clean_text(query).lower():
        return False
    return bool(lost_content_words(query, served)) or relevant_served < relevant_query


def per_query_relevant(index, examples: pd.DataFrame, texts: Mapping[str, str], k: int, substitute: bool) -> dict:
    from minielm.evaluation import evaluate_queries

    detail = evaluate_queries(index, examples, texts, k, substitute)["per_query"]
    return {d["query_id"]: float(d["relevant"]) for d in detail}


def calibrate_threshold(
    raw: Mapping[str, str],
    scored: Mapping[str, tuple[str, float]],
    allowed: Mapping[str, bool],
    relevant_raw: Mapping[str, float],
    relevant_rewrite: Mapping[str, float],
    harm_ids: set[str],
    max_harm_rate: float,
    fallback: Mapping[str, str] | None = None,
    relevant_fallback: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The threshold with the most relevant products per query whose harm rate is within target.

    Candidates: 0 (always rewrite), the quantiles of the confidences, and :data:`NEVER_REWRITE`; ties
    go to the lower threshold (rewrite more), and a best that does not beat what is served when the
    rewriter abstains (``fallback``: a cascade's front-end rewrites; the raw query by default) becomes
    "never". Harm is always judged against the raw query, the fallback's included."""
    fallback = fallback if fallback is not None else raw
    relevant_fallback = relevant_fallback if relevant_fallback is not None else relevant_raw
    ids = list(scored)
    confidences = np.array([scored[q][1] for q in ids])
    candidates = sorted({0.0, NEVER_REWRITE, *np.quantile(confidences, np.linspace(0, 1, 41)).round(6).tolist()})
    harm_pool = [q for q in ids if q in harm_ids]

    def outcome(threshold: float) -> tuple[float, float, float]:
        rewrites = {q: allowed[q] and scored[q][1] >= threshold for q in ids}
        relevant = np.mean([relevant_rewrite[q] if rewrites[q] else relevant_fallback[q] for q in ids])
        harmed = [
            q
            for q in harm_pool
            if (
                is_harmed(raw[q], scored[q][0], relevant_raw[q], relevant_rewrite[q])
                if rewrites[q]
                else is_harmed(raw[q], fallback[q], relevant_raw[q], relevant_fallback[q])
            )
        ]
        harm = len(harmed) / len(harm_pool) if harm_pool else 0.0
        return float(relevant), harm, float(np.mean(list(rewrites.values())))

    table = [(t, *outcome(t)) for t in candidates]
    # A cascade's fallback may harm on its own; the LM may not add harm beyond the target or that floor.
    harm_limit = max(max_harm_rate, table[-1][2])
    feasible = [row for row in table if row[2] <= harm_limit]
    raw_relevant = float(np.mean([relevant_raw[q] for q in ids]))
    fallback_relevant = float(np.mean([relevant_fallback[q] for q in ids]))
    best = max(feasible, key=lambda row: (row[1], -row[0]))
    if best[1] <= fallback_relevant + 1e-12:  # no gain over abstaining: rewriting could only harm
        best = table[-1]
    threshold, relevant, harm, rate = best
    always = next(row for row in table if row[0] == 0.0)
    result = {
        "min_confidence": float(threshold),
        "abstains": threshold >= NEVER_REWRITE,
        "calibration_relevant_per_query": relevant,
        "calibration_raw_relevant_per_query": raw_relevant,
        "calibration_fallback_relevant_per_query": fallback_relevant,
        "calibration_always_rewrite_relevant_per_query": always[1],
        "calibration_harm_rate": harm,
        "calibration_always_rewrite_harm_rate": always[2],
        "calibration_rewrite_rate": rate,
        "calibration_max_harm_rate": max_harm_rate,
        "calibration_harm_queries": len(harm_pool),
        "calibration_guard_rejected": sum(not allowed[q] for q in ids),
    }
    if result["abstains"]:
        gainful = [row for row in table if row[0] < NEVER_REWRITE and row[1] > fallback_relevant]
        reference = "the raw queries" if fallback is raw else "the front end's rewrites"
        result["abstain_reason"] = (
            f"no threshold beats {reference} on validation"
            if not gainful
            else f"every threshold that beats {reference} harms more than {harm_limit:.1%} of the "
            f"leave-alone queries (lowest: {min(row[2] for row in gainful):.1%})"
        )
    return result


def calibrate_min_confidence(
    rewriter,
    data,
    split: str,
    max_queries: int,
    k: int,
    substitute_is_relevant: bool,
    index,
    max_harm_rate: float = 0.02,
) -> dict[str, Any]:
    """Pick ``rewriter.min_confidence`` on ``split`` (see the module doc); nothing to calibrate on: abstain."""
    from minielm.evaluation import raw_queries

    examples = data.examples[data.examples["split"] == split]
    if examples.empty:
        log.warning("no calibration split: the rewriter abstains (keeps every query)", split=split)
        return {
            "min_confidence": NEVER_REWRITE,
            "abstains": True,
            "abstain_reason": f"no {split!r} split to calibrate on",
            "calibration_split": None,
        }
    raw = raw_queries(examples)
    keep = sorted(raw)[:max_queries]
    examples = examples[examples[QUERY_ID].astype(str).isin(keep)]
    raw = {q: raw[q] for q in keep}
    harm_ids, harm_set = leave_alone_ids(examples)
    scored = dict(zip(keep, rewriter.rewrite_with_confidence([raw[q] for q in keep])))
    guard = getattr(rewriter, "guard", None)
    allowed = {q: guard is None or guard.allows(raw[q], scored[q][0]) for q in keep}
    relevant_raw = per_query_relevant(index, examples, raw, k, substitute_is_relevant)
    relevant_rewrite = per_query_relevant(index, examples, {q: scored[q][0] for q in keep}, k, substitute_is_relevant)
    fallback = relevant_fallback = None
    if getattr(rewriter, "front_end", None) is not None:
        fallback = dict(zip(keep, rewriter.lm_inputs([raw[q] for q in keep])))
        relevant_fallback = per_query_relevant(index, examples, fallback, k, substitute_is_relevant)
    result = calibrate_threshold(
        raw, scored, allowed, relevant_raw, relevant_rewrite, harm_ids, max_harm_rate, fallback, relevant_fallback
    )
    result.update(calibration_split=split, calibration_queries=len(keep), calibration_harm_set=harm_set)
    log.info("rewriter calibrated", **{k: v for k, v in result.items() if not isinstance(v, dict)})
    return result


def harm_report(raw: Mapping[str, str], served: Mapping[str, str], harm_ids: set[str], examples: int = 5) -> dict:
    """Share of leave-alone queries whose served text loses a content word, with examples."""
    pool = [q for q in raw if q in harm_ids]
    harmed = []
    for q in pool:
        lost = lost_content_words(raw[q], served[q]) if clean_text(served[q]) != clean_text(raw[q]) else []
        if lost:
            harmed.append({"query": raw[q], "rewrite": served[q], "lost": lost})
    return {
        "harm_rate": len(harmed) / len(pool) if pool else None,
        "harm_queries": len(pool),
        "harmed_examples": harmed[:examples],
    }


def safe_share(queries: Sequence[str], served: Sequence[str]) -> dict[str, Any]:
    """Share of queries left unchanged or changed without losing a content word (real query strings)."""
    changed = [(q, s) for q, s in zip(queries, served) if clean_text(q).lower() != clean_text(s).lower()]
    unsafe = [(q, s) for q, s in changed if lost_content_words(q, s)]
    n = len(queries)
    return {
        "n_queries": n,
        "unchanged_share": 1 - len(changed) / n if n else None,
        "safe_share": 1 - len(unsafe) / n if n else None,
        "unsafe_examples": [{"query": q, "rewrite": s, "lost": lost_content_words(q, s)} for q, s in unsafe[:5]],
    }
