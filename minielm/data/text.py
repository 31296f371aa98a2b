"""The one text a model or the search engine sees for a product: its title plus its attributes.

Kept in one place so the BM25 index, the relevance models and the feedback simulator agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

from minielm.data.esci import PRODUCT_BRAND, PRODUCT_COLOR, PRODUCT_TITLE

_CATALOG_WORD = re.compile(r"[a-z0-9]+(?:[\-'.][a-z0-9]+)*")

# Attribute columns appended after the title, when a catalog has them (the synthetic one does).
ATTRIBUTE_COLUMNS = (PRODUCT_BRAND, PRODUCT_COLOR, "product_type", "material", "size")


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value).strip()


def _row_text(row: Mapping) -> str:
    if PRODUCT_TITLE not in row:
        raise KeyError(f"product_text: the product has no {PRODUCT_TITLE!r} field")
    parts = [_clean(row[PRODUCT_TITLE])]
    parts += [_clean(row[c]) for c in ATTRIBUTE_COLUMNS if c in row]
    return " | ".join(p for p in parts if p)


def product_text(row_or_frame: Mapping | pd.Series | pd.DataFrame) -> str | pd.Series:
    """``title | brand | colour | type | material | size`` (empty parts skipped).

    A row (dict or Series) gives a string; a DataFrame gives a Series of strings aligned to it.
    """
    if isinstance(row_or_frame, pd.DataFrame):
        frame = row_or_frame
        if PRODUCT_TITLE not in frame.columns:
            raise KeyError(f"product_text: the frame has no {PRODUCT_TITLE!r} column")
        columns = [PRODUCT_TITLE] + [c for c in ATTRIBUTE_COLUMNS if c in frame.columns]
        parts = frame[columns].fillna("").astype(str)
        text = parts[columns[0]].str.strip()
        for column in columns[1:]:
            value = parts[column].str.strip()
            text = text.where(value == "", text + " | " + value)
        return text.str.strip(" |")
    return _row_text(row_or_frame)


def catalog_words(text: object) -> list[str]:
    """The lower-cased words of ``text`` as the catalog vocabulary counts them: model numbers and hyphenated or
    dotted words stay whole (``t-704``, ``1.5``)."""
    return _CATALOG_WORD.findall(str(text).lower())
