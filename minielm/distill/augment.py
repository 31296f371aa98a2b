"""Augmented, teacher-labelled training data for the relevance student (the Walmart recipe).

Gold ESCI labels are few; a catalog and a query log are many. We draw unlabelled triples
(query, product a, product b) where a is one of the query's retrieved candidates and b comes from
one of three sources:

- ``retrieved``: another candidate of the same query (hard pairs: both look plausible),
- ``same_category``: a product of a's category that the query did not retrieve (near misses),
- ``random``: any catalog product (easy negatives that anchor the scale).

The relevance teacher then scores both products; the triple is oriented so that ``pos`` is the
product the teacher prefers, and its margin is what Margin-MSE teaches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.models.interfaces import RelevanceScorer
from minielm.models.relevance_score import expected_gain

log = get_logger(__name__)

TRIPLE_SOURCES = ("retrieved", "same_category", "random")
CATEGORY_COLUMNS = ("category", "product_type")
PROB_COLUMNS = ("E", "S", "C", "I")

Retriever = Callable[[list[str], int], list[list[str]]]


class AugmentedDataError(InputError):
    """The augmented data cannot be built or is unusable for training (e.g. empty)."""


def _category_of(products: pd.DataFrame) -> pd.Series | None:
    for column in CATEGORY_COLUMNS:
        if column in products.columns:
            return products.set_index("product_id")[column].astype(str)
    return None


def _source_counts(weights: Mapping[str, float], n: int) -> dict[str, int]:
    """Split n draws over the sources in proportion to their weights (largest remainder)."""
    total = sum(weights.values())
    raw = {s: n * w / total for s, w in weights.items()}
    counts = {s: int(v) for s, v in raw.items()}
    for source in sorted(raw, key=lambda s: raw[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[source] += 1
    return counts


def build_triples(
    queries: Sequence[str],
    products: pd.DataFrame,
    retrieve: Retriever,
    triples_per_query: int = 8,
    sources: Mapping[str, float] | None = None,
    retrieval_depth: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Unlabelled triples: columns query, product_a, product_b, source.

    ``retrieve(queries, k)`` returns product ids, best first (e.g. ``SearchIndex.search``).
    A source with nothing to draw from for a query (no category column, too few candidates) gives
    its share to ``random``, so every query yields ``triples_per_query`` triples when the catalog
    has at least two products.
    """
    sources = dict(sources or {"retrieved": 0.5, "same_category": 0.3, "random": 0.2})
    unknown = set(sources) - set(TRIPLE_SOURCES)
    if unknown:
        raise AugmentedDataError(f"unknown triple sources {sorted(unknown)}; expected {TRIPLE_SOURCES}")
    if "product_id" not in products.columns:
        raise AugmentedDataError("products frame has no product_id column")
    catalog = products["product_id"].astype(str).to_numpy()
    if len(catalog) < 2:
        raise AugmentedDataError(f"the catalog has {len(catalog)} products; at least 2 are needed for pairs")
    queries = list(dict.fromkeys(q for q in queries if isinstance(q, str) and q.strip()))
    if not queries:
        raise AugmentedDataError("no non-empty queries to augment")
    category = _category_of(products)
    if category is None and sources.get("same_category", 0) > 0:
        log.warning(
            "no category column in products; same_category draws fall back to random", expected=list(CATEGORY_COLUMNS)
        )
    by_category = (
        {c: ids.to_numpy() for c, ids in category.index.to_series().groupby(category.values)}
        if category is not None
        else {}
    )
    rng = np.random.default_rng(seed)
    counts = _source_counts(sources, triples_per_query)
    rows: list[tuple[str, str, str, str]] = []
    retrieved_lists = retrieve(queries, retrieval_depth)
    for query, candidates in tqdm(
        zip(queries, retrieved_lists), total=len(queries), desc="augment", disable=len(queries) < 200
    ):
        candidates = [str(c) for c in candidates]
        if not candidates:
            candidates = [str(rng.choice(catalog))]
        retrieved_set = set(candidates)
        for source, count in counts.items():
            for _ in range(count):
                a = candidates[int(rng.integers(0, min(len(candidates), max(1, retrieval_depth // 2))))]
                b, used = _draw_second(source, a, candidates, retrieved_set, by_category, category, catalog, rng)
                rows.append((query, a, b, used))
    triples = pd.DataFrame(rows, columns=["query", "product_a", "product_b", "source"])
    log.info(
        "triples built",
        queries=len(queries),
        triples=len(triples),
        **{f"from_{s}": int((triples["source"] == s).sum()) for s in TRIPLE_SOURCES},
    )
    return triples


def _draw_second(
    source: str,
    a: str,
    candidates: list[str],
    retrieved_set: set[str],
    by_category: dict,
    category: pd.Series | None,
    catalog: np.ndarray,
    rng: np.random.Generator,
) -> tuple[str, str]:
    if source == "retrieved":
        others = [c for c in candidates if c != a]
        if others:
            return others[int(rng.integers(0, len(others)))], "retrieved"
    if source == "same_category" and category is not None and a in category.index:
        pool = [p for p in by_category.get(category[a], ()) if p != a and p not in retrieved_set]
        if pool:
            return str(pool[int(rng.integers(0, len(pool)))]), "same_category"
    while True:
        b = str(catalog[int(rng.integers(0, len(catalog)))])
        if b != a:
            return b, "random"


def label_triples(
    triples: pd.DataFrame, product_texts: Mapping[str, str], teacher: RelevanceScorer, batch_size: int = 64
) -> pd.DataFrame:
    """Score both products of every triple with the teacher; orient so ``pos`` is the preferred one.

    The teacher's score here is the expected graded gain of its class probabilities, the same scalar
    the cross-encoder student outputs; one teacher pass gives both the margin and the soft labels.

    Adds pos_product_id, neg_product_id, pos_score, neg_score, margin and the teacher's class
    probabilities ``pos_E..pos_I``, ``neg_E..neg_I`` (soft labels).
    """
    if triples is None or len(triples) == 0:
        raise AugmentedDataError(
            "augmented data is empty: 0 triples to label (check the queries, the catalog and "
            "distill.relevance.triples_per_query)"
        )
    check_products_known(triples, ("product_a", "product_b"), product_texts, "triples")
    pairs = pd.concat(
        [
            triples[["query", "product_a"]].rename(columns={"product_a": "product_id"}),
            triples[["query", "product_b"]].rename(columns={"product_b": "product_id"}),
        ],
        ignore_index=True,
    ).drop_duplicates(ignore_index=True)
    probs = []
    for start in tqdm(range(0, len(pairs), batch_size), desc="teacher labels", disable=len(pairs) < 4 * batch_size):
        chunk = pairs.iloc[start : start + batch_size]
        probs.append(
            np.asarray(teacher.predict_proba(chunk["query"].tolist(), [product_texts[p] for p in chunk["product_id"]]))
        )
    prob = np.concatenate(probs).reshape(len(pairs), len(PROB_COLUMNS))
    # The margin is taken on the scalar the student outputs (expected graded gain), so both share a scale.
    scores = expected_gain(prob).astype(np.float64)
    labelled = pairs.assign(score=scores, **{c: prob[:, i] for i, c in enumerate(PROB_COLUMNS)})
    lookup = labelled.set_index(["query", "product_id"])
    a = lookup.loc[list(zip(triples["query"], triples["product_a"]))].reset_index(drop=True)
    b = lookup.loc[list(zip(triples["query"], triples["product_b"]))].reset_index(drop=True)
    swap = (b["score"] > a["score"]).to_numpy()
    pos = {c: np.where(swap, b[c], a[c]) for c in ("score", *PROB_COLUMNS)}
    neg = {c: np.where(swap, a[c], b[c]) for c in ("score", *PROB_COLUMNS)}
    out = pd.DataFrame(
        {
            "query": triples["query"].to_numpy(),
            "source": triples["source"].to_numpy(),
            "pos_product_id": np.where(swap, triples["product_b"], triples["product_a"]),
            "neg_product_id": np.where(swap, triples["product_a"], triples["product_b"]),
            "pos_score": pos["score"].astype(np.float32),
            "neg_score": neg["score"].astype(np.float32),
        }
    )
    out["margin"] = out["pos_score"] - out["neg_score"]
    for c in PROB_COLUMNS:
        out[f"pos_{c}"] = pos[c].astype(np.float32)
        out[f"neg_{c}"] = neg[c].astype(np.float32)
    log.info(
        "triples labelled", triples=len(out), unique_pairs=len(pairs), mean_margin=round(float(out["margin"].mean()), 4)
    )
    return out


def check_products_known(
    frame: pd.DataFrame, columns: Sequence[str], product_texts: Mapping[str, str], what: str
) -> None:
    """Every product id in ``columns`` must have a product text: nothing is dropped silently."""
    for column in columns:
        if column not in frame.columns:
            raise AugmentedDataError(f"{what} lack column {column!r}")
        unknown = ~frame[column].astype(str).isin(product_texts.keys())
        if unknown.any():
            examples = sorted(set(frame.loc[unknown, column].astype(str)))[:3]
            raise AugmentedDataError(
                f"{what}: column {column!r} has {int(unknown.sum())} row(s) whose product is not in the catalog "
                f"(no product text), e.g. {examples}"
            )


def validate_labelled_triples(labelled: pd.DataFrame) -> None:
    """Fail before training on data that cannot train anything."""
    if labelled is None or len(labelled) == 0:
        raise AugmentedDataError("augmented data is empty: the teacher-labelled triples have 0 rows")
    required = {"query", "pos_product_id", "neg_product_id", "pos_score", "neg_score"}
    missing = sorted(required - set(labelled.columns))
    if missing:
        raise AugmentedDataError(f"labelled triples lack columns {missing}")
    scores = labelled[["pos_score", "neg_score"]].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        raise AugmentedDataError("labelled triples hold non-finite teacher scores (NaN or inf)")
