"""Stable keys for queries: the Feast entity key and the join key between serving, feedback and drift."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACES = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    """Case-fold, NFKC-normalise and collapse whitespace, so trivially different spellings share a key."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def query_key(text: str) -> str:
    """16 hex characters of the SHA-1 of the normalised query."""
    return hashlib.sha1(normalize_query(text).encode("utf-8")).hexdigest()[:16]
