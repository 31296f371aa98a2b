"""What "better" means for every rewriter: the search results it leads to, judged by ESCI labels.

For each query id the text to search (raw query, oracle rewrite or a model's rewrite) goes through
the same :class:`~minielm.search.SearchIndex`; the top-k product ids are judged against the ESCI
examples. Metrics (averaged over queries):

- ``relevant_per_query``: relevant products in the top k (Exact; also Substitute if configured),
  the MiniELM paper's headline figure;
- ``ndcg``: nDCG@k with ESCI gains (E 1, S 0.1, C 0.01, I 0); unjudged products gain 0;
- ``recall``: relevant products retrieved / relevant products judged (queries with none excluded);
- ``zero_result_rate``: share of queries whose search returned nothing.

:func:`quality_report` adds what the quality contract asks for on synthetic data: relevant@k per
noise class and for seen vs unseen noise (``noise_novelty``), and the harm rate (rewrites that
lose a content word or change intent, :mod:`minielm.intent`) on clean and out-of-catalog queries,
whose right rewrite is the query itself, plus harm per noise class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from minielm.data.esci import (
    CANONICAL_QUERY,
    ESCI_GAINS,
    ESCI_LABEL,
    NOISE,
    NOISE_NOVELTY,
    PRODUCT_ID,
    QUERY,
    QUERY_ID,
)
from minielm.data.vocabulary import CLEAN_CLASS, OUT_OF_CATALOG_CLASS
from minielm.intent import harm_summary, intent_check
from minielm.logs import get_logger

log = get_logger(__name__)

METRICS = ("relevant_per_query", "ndcg", "recall", "zero_result_rate")
RewriteSource = Mapping[str, str] | Callable[[list[str]], list[str]] | Any


def relevant_labels(substitute_is_relevant: bool) -> frozenset[str]:
    return frozenset({"E", "S"} if substitute_is_relevant else {"E"})


def dcg(gains: Sequence[float]) -> float:
    return float(sum(g / math.log2(rank + 2) for rank, g in enumerate(gains)))


def ndcg_at_k(retrieved_labels: Sequence[str | None], judged_labels: Sequence[str], k: int) -> float:
    """nDCG@k with ESCI gains; ``None`` marks an unjudged product (gain 0). 0 when nothing has gain."""
    ideal = dcg(sorted((ESCI_GAINS[label] for label in judged_labels), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([ESCI_GAINS.get(label, 0.0) if label else 0.0 for label in retrieved_labels[:k]]) / ideal


def _judgments(examples: pd.DataFrame) -> dict[str, dict[str, str]]:
    missing = [c for c in (QUERY_ID, PRODUCT_ID, ESCI_LABEL) if c not in examples.columns]
    if missing:
        raise ValueError(f"evaluate: the examples frame lacks column(s) {missing}")
    judged: dict[str, dict[str, str]] = {}
    for query_id, product_id, label in zip(
        examples[QUERY_ID].astype(str), examples[PRODUCT_ID].astype(str), examples[ESCI_LABEL]
    ):
        judged.setdefault(query_id, {})[product_id] = label
    return judged


def evaluate_queries(
    index, examples: pd.DataFrame, queries_by_query_id: Mapping[str, str], k: int, substitute_is_relevant: bool = False
) -> dict[str, Any]:
    """Search each query id's text, judge the top ``k`` against ``examples``; metrics plus per-query detail."""
    if k < 1:
        raise ValueError(f"evaluate: k must be >= 1, got {k}")
    judged = _judgments(examples)
    unknown = [q for q in queries_by_query_id if str(q) not in judged]
    if unknown:
        raise ValueError(
            f"evaluate: query ids without judgments in the examples: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )
    query_ids = [str(q) for q in queries_by_query_id]
    texts = [str(queries_by_query_id[q]) if queries_by_query_id[q] is not None else "" for q in queries_by_query_id]
    results = index.search(texts, k) if texts else []
    relevant = relevant_labels(substitute_is_relevant)
    detail = []
    for query_id, text, hits in zip(query_ids, texts, results):
        labels = judged[query_id]
        retrieved = [labels.get(pid) for pid in hits[:k]]
        n_relevant = sum(label in relevant for label in retrieved)
        total_relevant = sum(label in relevant for label in labels.values())
        detail.append(
            {
                "query_id": query_id,
                "query": text,
                "n_results": len(hits),
                "relevant": n_relevant,
                "ndcg": ndcg_at_k(retrieved, list(labels.values()), k),
                "recall": n_relevant / total_relevant if total_relevant else None,
            }
        )
    recalls = [d["recall"] for d in detail if d["recall"] is not None]
    n = len(detail)
    report = {
        "k": k,
        "substitute_is_relevant": substitute_is_relevant,
        "n_queries": n,
        "relevant_per_query": float(np.mean([d["relevant"] for d in detail])) if n else 0.0,
        "ndcg": float(np.mean([d["ndcg"] for d in detail])) if n else 0.0,
        "recall": float(np.mean(recalls)) if recalls else 0.0,
        "zero_result_rate": float(np.mean([d["n_results"] == 0 for d in detail])) if n else 0.0,
        "per_query": detail,
    }
    return report


def raw_queries(examples: pd.DataFrame) -> dict[str, str]:
    """query id -> the shopper's query as typed."""
    first = examples.drop_duplicates(QUERY_ID)
    return dict(zip(first[QUERY_ID].astype(str), first[QUERY].astype(str)))


def oracle_queries(examples: pd.DataFrame) -> dict[str, str]:
    """query id -> the canonical rewrite (synthetic data only)."""
    if CANONICAL_QUERY not in examples.columns:
        raise ValueError(f"oracle rewrites need a {CANONICAL_QUERY!r} column (synthetic data); the examples lack it")
    first = examples.drop_duplicates(QUERY_ID)
    return dict(zip(first[QUERY_ID].astype(str), first[CANONICAL_QUERY].astype(str)))


def rewrite_queries(source: RewriteSource, raw: Mapping[str, str]) -> dict[str, str]:
    """Turn a rewrite source into query id -> text: a mapping is used as is (restricted to ``raw``'s ids),
    a :class:`~minielm.models.interfaces.QueryRewriter` gives its best rewrite, a callable maps a batch."""
    ids = list(raw)
    queries = [raw[q] for q in ids]
    if isinstance(source, Mapping):
        missing = [q for q in ids if q not in source]
        if missing:
            raise ValueError(f"rewrites missing for query ids {missing[:5]}")
        return {q: source[q] for q in ids}
    if hasattr(source, "rewrite"):
        rewrites = [options[0] if options else "" for options in source.rewrite(queries, num_return=1)]
    elif callable(source):
        rewrites = list(source(queries))
    else:
        raise TypeError(
            f"a rewrite source must be a mapping, a QueryRewriter or a callable, got {type(source).__name__}"
        )
    if len(rewrites) != len(queries):
        raise ValueError(f"the rewriter returned {len(rewrites)} rewrites for {len(queries)} queries")
    return dict(zip(ids, rewrites))


def compare_rewriters(
    index, examples: pd.DataFrame, systems: Mapping[str, RewriteSource], k: int, substitute_is_relevant: bool = False
) -> dict[str, Any]:
    """Evaluate several rewrite sources on the same queries; ``"raw"`` is the baseline for gains.

    ``systems`` maps a name to a mapping (query id -> text), a QueryRewriter or a batch callable.
    Callables and rewriters receive the raw queries of ``examples``.
    """
    raw = raw_queries(examples)
    report: dict[str, Any] = {
        "k": k,
        "substitute_is_relevant": substitute_is_relevant,
        "n_queries": len(raw),
        "systems": {},
        "per_query": {},
    }
    for name, source in systems.items():
        result = evaluate_queries(index, examples, rewrite_queries(source, raw), k, substitute_is_relevant)
        report["per_query"][name] = result.pop("per_query")
        report["systems"][name] = {m: result[m] for m in METRICS}
        log.info("rewriter evaluated", system=name, **report["systems"][name])
    if "raw" in report["systems"]:
        base = report["systems"]["raw"]["relevant_per_query"]
        report["gain_over_raw"] = {
            name: {
                "relevant_per_query": m["relevant_per_query"] - base,
                "relative": (m["relevant_per_query"] / base - 1.0) if base else None,
            }
            for name, m in report["systems"].items()
        }
    return report


def format_report_table(report: Mapping[str, Any]) -> str:
    """A plain-text table of a :func:`compare_rewriters` report."""
    k = report["k"]
    header = (
        f"{'system':<12} {'relevant@' + str(k):>12} {'nDCG@' + str(k):>9} {'recall@' + str(k):>10} "
        f"{'zero-result':>12} {'vs raw':>8}"
    )
    lines = [
        f"{report['n_queries']} queries, k={k}, relevant = E{'+S' if report['substitute_is_relevant'] else ''}",
        header,
        "-" * len(header),
    ]
    gains = report.get("gain_over_raw", {})
    for name, m in report["systems"].items():
        relative = gains.get(name, {}).get("relative")
        shown = f"{relative:+.1%}" if relative is not None else "n/a"
        lines.append(
            f"{name:<12} {m['relevant_per_query']:>12.3f} {m['ndcg']:>9.3f} {m['recall']:>10.3f} "
            f"{m['zero_result_rate']:>12.1%} {shown:>8}"
        )
    return "\n".join(lines)


# Query classes whose right rewrite is the query itself: harm is measured on them.
UNCHANGED_CLASSES = (CLEAN_CLASS, OUT_OF_CATALOG_CLASS)


def query_classes(examples: pd.DataFrame) -> dict[str, list[str]]:
    """query id -> its classes: each noise kind applied, or ``clean``, or ``out_of_catalog`` (empty
    lists when the examples have no ``noise`` column, as real data does not)."""
    first = examples.drop_duplicates(QUERY_ID)
    if NOISE not in first.columns:
        return {str(q): [] for q in first[QUERY_ID]}
    return {
        str(q): [k for k in str(noise or "").split(",") if k] or [CLEAN_CLASS]
        for q, noise in zip(first[QUERY_ID], first[NOISE].fillna(""))
    }


def novelty_groups(examples: pd.DataFrame) -> dict[str, list[str]]:
    """query id -> [``seen`` | ``unseen`` | ``none``]: whether the train split shows the query's noise edits
    (empty when the examples have no ``noise_novelty`` column, as real data does not)."""
    first = examples.drop_duplicates(QUERY_ID)
    if NOISE_NOVELTY not in first.columns:
        return {}
    return {str(q): [str(v)] for q, v in zip(first[QUERY_ID], first[NOISE_NOVELTY])}


def relevant_by_novelty(examples: pd.DataFrame, per_query: list[dict]) -> dict[str, dict[str, float]]:
    """Mean relevant@k of ``per_query`` rows for seen-noise, unseen-noise and clean queries."""
    return _mean_by(per_query, novelty_groups(examples))


def _mean_by(per_query: list[dict], groups: Mapping[str, list[str]]) -> dict[str, dict[str, float]]:
    sums: dict[str, list[float]] = {}
    for row in per_query:
        for group in groups.get(row["query_id"], []):
            sums.setdefault(group, []).append(row["relevant"])
    return {g: {"relevant_per_query": float(np.mean(v)), "n_queries": len(v)} for g, v in sorted(sums.items())}


def harm_on_unchanged_queries(examples: pd.DataFrame, rewrites: Mapping[str, str]) -> dict[str, Any] | None:
    """Harm of ``rewrites`` (query id -> text) on the clean and out-of-catalog queries of ``examples``.

    Real data has no noise classes: there every query counts (a rewrite may fix it, but never lose a
    content word of it). None when no query of ``examples`` has a rewrite.
    """
    classes = query_classes(examples)
    raw = raw_queries(examples)
    if any(classes.values()):
        ids = [q for q, kinds in classes.items() if kinds and kinds[0] in UNCHANGED_CLASSES and q in rewrites]
        labels = [classes[q][0] for q in ids]
    else:
        ids = [q for q in classes if q in rewrites]
        labels = ["all"] * len(ids)
    if not ids:
        return None
    return harm_summary([raw[q] for q in ids], [rewrites[q] for q in ids], classes=labels)


def quality_report(
    index, examples: pd.DataFrame, systems: Mapping[str, RewriteSource], k: int, substitute_is_relevant: bool = False
) -> dict[str, Any]:
    """:func:`compare_rewriters` plus, per system, relevant@k by noise class and by noise novelty,
    harm on clean and out-of-catalog queries (``harm``), harm per noise class (``harm_by_noise``), and
    a few example rewrites (``examples``: harmed ones first, then changed ones). On synthetic data a
    noisy query's harm is judged against its canonical rewrite (what the checker cannot match in the
    oracle rewrite either is not counted)."""
    raw = raw_queries(examples)
    rewrites = {name: rewrite_queries(source, raw) for name, source in systems.items()}
    report = compare_rewriters(index, examples, rewrites, k, substitute_is_relevant)
    classes = query_classes(examples)
    novelty = novelty_groups(examples)
    canonical = oracle_queries(examples) if CANONICAL_QUERY in examples.columns else {}
    ids = list(raw)
    report["by_noise"], report["by_novelty"], report["harm"], report["harm_by_noise"] = {}, {}, {}, {}
    report["examples"] = {}
    for name, texts in rewrites.items():
        per_query = report["per_query"][name]
        report["by_noise"][name] = _mean_by(per_query, classes)
        report["by_novelty"][name] = _mean_by(per_query, novelty)
        report["harm"][name] = harm_on_unchanged_queries(examples, texts)
        checks = {q: intent_check(raw[q], texts[q], reference=canonical.get(q)) for q in ids}
        by_kind: dict[str, list[str]] = {}
        for q in ids:
            for kind in classes[q]:
                by_kind.setdefault(kind, []).append(q)
        report["harm_by_noise"][name] = {
            kind: {
                "harm_rate": float(np.mean([checks[q].harmed for q in members])),
                "changed_share": float(np.mean([checks[q].changed for q in members])),
                "n_queries": len(members),
            }
            for kind, members in sorted(by_kind.items())
        }
        relevant = {row["query_id"]: row["relevant"] for row in per_query}
        base = {row["query_id"]: row["relevant"] for row in report["per_query"].get("raw", per_query)}
        changed = [q for q in ids if checks[q].changed]
        harmed = [q for q in ids if checks[q].harmed]
        shown = list(dict.fromkeys(harmed[:6] + changed[:10] + ids[:4]))
        report["examples"][name] = [
            {
                "query": raw[q],
                "rewrite": texts[q],
                "canonical": canonical.get(q),
                "classes": classes[q],
                "relevant": relevant.get(q),
                "relevant_raw": base.get(q),
                "harm": list(checks[q].reasons) if checks[q].harmed else [],
            }
            for q in shown
        ]
    return report


def real_query_strings(sample_dir) -> list[str]:
    """The distinct real shopper queries of the shared ESCI sample: the query set, then the UBI log's."""
    from pathlib import Path

    from minielm.data.esci import SAMPLE_QUERYSET_FILE, SAMPLE_UBI_FILE, read_queryset, read_ubi_events

    sample_dir = Path(sample_dir)
    queries = read_queryset(sample_dir / SAMPLE_QUERYSET_FILE)
    ubi_queries, _ = read_ubi_events(sample_dir / SAMPLE_UBI_FILE)
    if "user_query" in ubi_queries.columns:
        queries += ubi_queries["user_query"].dropna().astype(str).tolist()
    return list(dict.fromkeys(q.strip() for q in queries if q and q.strip()))


def real_queries_safety(source: RewriteSource, queries: list[str]) -> dict[str, Any]:
    """On real query strings (no labels): the share left unchanged or changed without losing a
    content word (``safe_share``), the changed share, and harmed examples."""
    raw = {str(i): q for i, q in enumerate(queries)}
    rewrites = rewrite_queries(source, raw)
    return harm_summary(list(raw.values()), [rewrites[i] for i in raw])
