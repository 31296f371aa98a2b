"""Teacher training data from the ESCI layout, checked before any model is built.

Problems are reported as :class:`TeacherDataError` naming the column, split or values at fault:
missing columns, an empty train or eval split, labels outside E/S/C/I, examples whose product is
not in the catalog, or (for the rewriter) no ``canonical_query`` rewrites.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from minielm.data.esci import (
    CANONICAL_QUERY,
    ESCI_LABEL,
    ESCI_LABELS,
    PRODUCT_ID,
    QUERY,
    QUERY_ID,
    SPLIT,
    EsciData,
    EsciFormatError,
    load_esci,
    validate_examples,
    validate_products,
)
from minielm.data.text import product_text
from minielm.errors import InputError


class TeacherDataError(InputError):
    """The training data cannot train a teacher; the message says which column, split or values."""


def load_teacher_data(data: EsciData | Path | str) -> EsciData:
    """Read (or re-validate) an ESCI dataset; any format problem becomes a TeacherDataError."""
    try:
        if isinstance(data, EsciData):
            _check_labels(data.examples)
            return EsciData(examples=validate_examples(data.examples), products=validate_products(data.products))
        return load_esci(data)
    except EsciFormatError as error:
        raise TeacherDataError(f"teacher data: {error}") from None


def _check_labels(examples: pd.DataFrame) -> None:
    if ESCI_LABEL in examples.columns:
        labels = examples[ESCI_LABEL].dropna().astype(str)
        bad = sorted(set(labels) - set(ESCI_LABELS))
        if bad:
            raise TeacherDataError(
                f"teacher data: column {ESCI_LABEL!r} has {int((~labels.isin(ESCI_LABELS)).sum())} row(s) with "
                f"labels {bad[:5]} outside {list(ESCI_LABELS)}"
            )


def split_examples(data: EsciData, split: str, purpose: str) -> pd.DataFrame:
    examples = data.examples[data.examples[SPLIT] == split]
    if examples.empty:
        counts = data.examples[SPLIT].value_counts().to_dict()
        raise TeacherDataError(f"teacher data: the {purpose} split {split!r} is empty (examples per split: {counts})")
    return examples.reset_index(drop=True)


def rewrite_pairs(data: EsciData, split: str, identity_pairs: bool = False) -> list[tuple[str, str]]:
    """(noisy query, canonical rewrite) per query of the split; identity pairs teach leaving clean queries be."""
    if CANONICAL_QUERY not in data.examples.columns:
        raise TeacherDataError(
            f"teacher data: the rewriter needs a {CANONICAL_QUERY!r} column (the target rewrite "
            f"of each query); the examples have {sorted(data.examples.columns)}"
        )
    examples = split_examples(data, split, "rewriter training" if split == "train" else "rewriter")
    queries = examples.drop_duplicates(QUERY_ID)
    blank = queries[CANONICAL_QUERY].isna() | (queries[CANONICAL_QUERY].astype(str).str.strip() == "")
    if blank.any():
        raise TeacherDataError(
            f"teacher data: column {CANONICAL_QUERY!r} is empty for query ids "
            f"{queries.loc[blank, QUERY_ID].head(5).tolist()}"
        )
    pairs = list(zip(queries[QUERY].astype(str), queries[CANONICAL_QUERY].astype(str)))
    if identity_pairs:
        pairs += [(canonical, canonical) for canonical in sorted({c for _, c in pairs})]
    return pairs


def product_texts(data: EsciData) -> dict[str, str]:
    """product id -> the text the relevance teacher reads (:func:`minielm.data.text.product_text`)."""
    return dict(zip(data.products[PRODUCT_ID].astype(str), product_text(data.products)))


def relevance_frame(data: EsciData, split: str, texts: dict[str, str], limit: int = 0, seed: int = 0) -> pd.DataFrame:
    """query_id, query, product_id, product_text, esci_label for the split's labelled pairs.

    ``limit`` keeps whole queries (sampled by seed) until about that many pairs, so nDCG per query
    stays meaningful.
    """
    examples = split_examples(data, split, "relevance")
    ids = examples[PRODUCT_ID].astype(str)
    missing = sorted(set(ids) - set(texts))
    if missing:
        raise TeacherDataError(
            f"teacher data: column {PRODUCT_ID!r} of split {split!r} has {len(missing)} product id(s) "
            f"({int((~ids.isin(texts.keys())).sum())} row(s)) that are not in the products file, e.g. {missing[:5]}"
        )
    if limit and len(examples) > limit:
        query_ids = examples[QUERY_ID].drop_duplicates().sample(frac=1.0, random_state=seed)
        sizes = examples.groupby(QUERY_ID).size().reindex(query_ids)
        keep = set(sizes.index[(sizes.cumsum() <= limit) | (sizes.cumsum().shift(fill_value=0) == 0)])
        examples = examples[examples[QUERY_ID].isin(keep)].reset_index(drop=True)
    frame = examples[[QUERY_ID, QUERY, PRODUCT_ID, ESCI_LABEL]].copy()
    frame["product_text"] = frame[PRODUCT_ID].astype(str).map(texts)
    return frame


def data_fingerprint(*parts: object) -> str:
    """A short stable hash of the training inputs, recorded in the registry metadata."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]
