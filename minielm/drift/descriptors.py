"""Per-request columns the drift checks compare: text descriptors, rewrite behaviour and outcomes.

All computed here with plain string operations (no nltk: its descriptors download data at run time).
A token is a maximal run of letters or digits after case folding. "Out of vocabulary" means not a
word of the catalog (product titles and attributes), or of the reference window when no catalog is
given: shoppers using words the catalog never uses is what a rewriter has to cope with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Size and count units shoppers write after a number ("12 oz", "6qt", "1.5 l").
UNIT_WORDS = frozenset(
    {
        "in",
        "inch",
        "inches",
        "ft",
        "foot",
        "feet",
        "cm",
        "mm",
        "m",
        "meter",
        "meters",
        "yd",
        "yard",
        "yards",
        "oz",
        "ounce",
        "ounces",
        "lb",
        "lbs",
        "pound",
        "pounds",
        "g",
        "gram",
        "grams",
        "kg",
        "mg",
        "l",
        "liter",
        "liters",
        "litre",
        "litres",
        "ml",
        "qt",
        "quart",
        "quarts",
        "gal",
        "gallon",
        "gallons",
        "cup",
        "cups",
        "ct",
        "count",
        "pack",
        "pk",
        "pcs",
        "piece",
        "pieces",
        "w",
        "watt",
        "watts",
        "v",
        "volt",
        "mah",
        "gb",
        "tb",
        "mb",
        "hz",
        "x",
    }
)
TEXT_DESCRIPTORS = ("length", "tokens", "digit_unit_share", "non_ascii_share", "oov_share")
CATALOG_TEXT_COLUMNS = (
    "product_title",
    "product_brand",
    "product_color",
    "product_type",
    "category",
    "material",
    "size",
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def map_distinct(values: pd.Series, function) -> np.ndarray:
    """``function`` of each row, computed once per distinct value (traffic repeats queries a lot)."""
    codes, distinct = pd.factorize(values.fillna("").astype(str), sort=False)
    results = np.asarray([function(value) for value in distinct], dtype=object)
    return results[codes] if len(codes) else np.asarray([], dtype=object)


def build_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Every token of the texts (case-folded)."""
    vocabulary: set[str] = set()
    for text in set(texts):
        if isinstance(text, str):
            vocabulary.update(tokens(text))
    return frozenset(vocabulary)


def catalog_vocabulary(catalog_path: Path) -> frozenset[str]:
    """The words of an ESCI products table: a parquet file, or a folder holding the products parquet."""
    path = Path(catalog_path)
    if path.is_dir():
        candidates = sorted(path.glob("*products*.parquet"))
        if not candidates:
            raise FileNotFoundError(f"drift.catalog_path: no *products*.parquet in {path}")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"drift.catalog_path: {path} does not exist")
    frame = pd.read_parquet(path)
    columns = [c for c in CATALOG_TEXT_COLUMNS if c in frame.columns]
    if not columns:
        raise ValueError(f"drift.catalog_path: {path} has none of the columns {list(CATALOG_TEXT_COLUMNS)}")
    return build_vocabulary(text for column in columns for text in frame[column].astype(str).tolist())


def _is_digit_or_unit(token: str, previous: str | None) -> bool:
    if any(ch.isdigit() for ch in token):
        return True
    return token in UNIT_WORDS and previous is not None and any(ch.isdigit() for ch in previous)


def text_descriptors(texts: pd.Series, vocabulary: frozenset[str], prefix: str) -> pd.DataFrame:
    """Length in characters, token count and the shares of digit/unit, non-ASCII and unknown tokens."""
    codes, unique = pd.factorize(texts.fillna("").astype(str), sort=False)
    rows = []
    for text in unique:
        words = tokens(text)
        n_words = len(words)
        digit_unit = sum(_is_digit_or_unit(w, words[i - 1] if i else None) for i, w in enumerate(words))
        unknown = sum(w not in vocabulary for w in words)
        non_ascii = sum(ord(ch) > 127 for ch in text)
        rows.append(
            (
                len(text),
                n_words,
                digit_unit / n_words if n_words else 0.0,
                non_ascii / len(text) if text else 0.0,
                unknown / n_words if n_words else 0.0,
            )
        )
    table = pd.DataFrame(rows, columns=[f"{prefix}_{name}" for name in TEXT_DESCRIPTORS], dtype=float)
    # One row per request, taken by position from the distinct texts (a string reindex costs seconds at 1M rows).
    return table.take(codes).reset_index(drop=True)


def rewrite_behaviour(queries: pd.Series, rewrites: pd.Series) -> pd.DataFrame:
    """Whether each rewrite equals its query (after case and space folding) and their edit distance."""
    from minielm.features.keys import normalize_query

    query_text = map_distinct(queries, normalize_query)
    rewrite_text = map_distinct(rewrites, normalize_query)
    pairs = pd.Series(list(zip(query_text, rewrite_text)), dtype=object)
    codes, distinct = pd.factorize(pairs, sort=False)
    distances = np.fromiter((Levenshtein.distance(q, r) for q, r in distinct), dtype=float, count=len(distinct))
    return pd.DataFrame(
        {
            "rewrite_identical": (query_text == rewrite_text).astype(float),
            "rewrite_edit_distance": distances[codes] if len(codes) else np.zeros(0),
        }
    )


def outcome_columns(window: pd.DataFrame) -> pd.DataFrame:
    """Per-request outcomes whose means are the rates on-call watches (CTR, reformulation, zero results)."""
    out = pd.DataFrame(index=window.index)
    if "clicks" in window:
        out["clicked"] = (pd.to_numeric(window["clicks"], errors="coerce").fillna(0) > 0).astype(float)
    if "reformulated" in window:
        out["reformulated"] = window["reformulated"].astype("boolean").fillna(False).astype(float)
    if "n_results" in window:
        out["zero_results"] = (pd.to_numeric(window["n_results"], errors="coerce").fillna(0) <= 0).astype(float)
    if "reward" in window:
        out["reward"] = pd.to_numeric(window["reward"], errors="coerce").astype(float)
    return out.reset_index(drop=True)
