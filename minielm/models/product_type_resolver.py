"""Names the catalog product type a shopper meant when the rules leave a phrase unexplained.

The phrase-table baseline only knows the shopper words its training pairs showed; a query like
``olive hoover`` (a synonym no pair held) keeps a phrase no product text contains. This resolver maps
such a phrase to one of the catalog's own ``product_type`` values (``hoover`` -> ``vacuum cleaner``).

What is learned and what is a rule:

* **Learned:** how close a phrase is to each product type: the cosine of all-MiniLM-L6-v2 sentence
  embeddings (:mod:`minielm.models.phrase_similarity`, the shipped encoder, not fine-tuned here). The
  candidates are only the catalog's product types.
* **Rules (where it may fire):** the query names no catalog product type; every word outside one run
  of 1-3 words is a catalog attribute word (brand, colour, material, feature, size or model), a
  number, a negation or the word after one, or a stop word; inside that run, a sub-span is a candidate
  only when it is not a catalog phrase (its words never stand together in any product text). The best
  candidate is replaced by its type when the cosine reaches ``min_similarity`` and beats the
  second-best type by ``min_margin``; the run's other words stay. Brands, numbers and negations are
  outside the run, so they are never touched.

``min_similarity`` is calibrated on validation against the real-query safe share (see
docs/rewriter.md): real shopper queries are full of words the synthetic catalog lacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from minielm.data.text import catalog_words, product_text
from minielm.errors import InputError
from minielm.intent import NEGATIONS, STOP_WORDS
from minielm.logs import get_logger

log = get_logger(__name__)

RESOLVER_FILE = "product_type_resolver.json"
FORMAT = "minielm.product_type_resolver/1"
MAX_SPAN_WORDS = 3
ATTRIBUTE_COLUMNS = ("product_brand", "product_color", "material", "feature", "size", "model")


def check_thresholds(min_similarity: float, min_margin: float) -> None:
    """Both are cosines: ``min_similarity`` in (0, 1], ``min_margin`` in [0, 1)."""
    if not 0.0 < min_similarity <= 1.0:
        raise InputError(f"product type resolver: min_similarity must be in (0, 1], got {min_similarity!r}")
    if not 0.0 <= min_margin < 1.0:
        raise InputError(f"product type resolver: min_margin must be in [0, 1), got {min_margin!r}")


def catalog_words_and_bigrams(products: pd.DataFrame) -> tuple[set[str], set[str]]:
    """Every word and every pair of adjacent words in any product text (lower-cased), in one pass."""
    vocabulary: set[str] = set()
    pairs: set[str] = set()
    for text in product_text(products):
        words = catalog_words(text)
        vocabulary.update(words)
        pairs.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return vocabulary, pairs


class ProductTypeResolver:
    """Catalog product type for the one phrase of a query the rules cannot explain (module docstring)."""

    def __init__(
        self,
        types: Iterable[str],
        attribute_words: Iterable[str],
        vocabulary: Iterable[str],
        bigrams: Iterable[str],
        *,
        min_similarity: float = 0.8,
        min_margin: float = 0.0,
        semantic_model: str | None = None,
    ) -> None:
        check_thresholds(min_similarity, min_margin)
        self.types = sorted({str(t).strip().lower() for t in types if str(t).strip()})
        if not self.types:
            raise InputError("product type resolver: the catalog has no product_type values")
        self.attribute_words = frozenset(attribute_words)
        self.vocabulary = frozenset(vocabulary)
        self.bigrams = frozenset(bigrams)
        self.min_similarity = min_similarity
        self.min_margin = min_margin
        self.semantic_model = semantic_model
        self._type_set = frozenset(self.types)
        self._max_type_words = max(len(t.split()) for t in self.types)
        self._type_vectors: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        products: pd.DataFrame,
        *,
        min_similarity: float = 0.8,
        min_margin: float = 0.0,
        semantic_model: str | None = None,
    ) -> ProductTypeResolver:
        """Types, attribute words and catalog phrases from the products table (needs ``product_type``)."""
        if "product_type" not in products.columns:
            raise InputError("product type resolver: the products table has no 'product_type' column")
        types = products["product_type"].dropna().astype(str).str.lower().unique().tolist()
        type_words = {w for t in types for w in t.split()}
        attributes: set[str] = set()
        for column in ATTRIBUTE_COLUMNS:
            if column in products.columns:
                for value in products[column].dropna().astype(str).str.lower().unique():
                    attributes.update(catalog_words(value))
        vocabulary, bigrams = catalog_words_and_bigrams(products)
        resolver = cls(
            types,
            attributes - type_words,
            vocabulary,
            bigrams,
            min_similarity=min_similarity,
            min_margin=min_margin,
            semantic_model=semantic_model,
        )
        log.info(
            "product type resolver fitted", types=len(resolver.types), attribute_words=len(resolver.attribute_words)
        )
        return resolver

    def names_type(self, words: Sequence[str]) -> bool:
        """Whether some run of ``words`` is a catalog product type."""
        return any(
            " ".join(words[i : i + n]) in self._type_set
            for n in range(1, self._max_type_words + 1)
            for i in range(len(words) - n + 1)
        )

    def _protected(self, words: Sequence[str], i: int) -> bool:
        word = words[i]
        return (
            word in self.attribute_words
            or any(c.isdigit() for c in word)
            or word in NEGATIONS
            or (i > 0 and words[i - 1] in NEGATIONS)
        )

    def unexplained_run(self, words: Sequence[str]) -> tuple[int, int] | None:
        """(start, end) of the only run of 1-3 unprotected content words, or None (see module docstring)."""
        if not words or self.names_type(words):
            return None
        runs: list[list[int]] = [[]]
        for i in range(len(words)):
            if self._protected(words, i):
                runs.append([])
            elif words[i] not in STOP_WORDS:
                runs[-1].append(i)
            elif runs[-1]:
                runs.append([])
        runs = [run for run in runs if run]
        if len(runs) != 1 or len(runs[0]) > MAX_SPAN_WORDS:
            return None
        return runs[0][0], runs[0][-1] + 1

    def is_catalog_phrase(self, words: Sequence[str]) -> bool:
        """Whether the words could stand together in a product text: each a catalog word, each adjacent
        pair a catalog bigram."""
        return all(w in self.vocabulary for w in words) and all(
            f"{a} {b}" in self.bigrams for a, b in zip(words, words[1:])
        )

    def _similarity(self):
        from minielm.models.phrase_similarity import shared_similarity

        return shared_similarity(self.semantic_model)

    def type_similarities(self, phrases: Sequence[str]) -> np.ndarray:
        """Cosine of each phrase (rows) with each product type (columns, in ``self.types`` order)."""
        similarity = self._similarity()
        if self._type_vectors is None:
            self._type_vectors = similarity.vectors(self.types)
        return similarity.vectors(list(phrases)) @ self._type_vectors.T

    def best_type(self, text: str) -> tuple[int, int, str, float, float] | None:
        """(start, end, type, cosine, margin over the second type) of the best candidate sub-span of the
        unexplained run of ``text``, or None where the rules say it may not fire."""
        words = text.split()
        run = self.unexplained_run(words)
        if run is None:
            return None
        start, end = run
        spans = [
            (a, b) for a in range(start, end) for b in range(a + 1, end + 1) if not self.is_catalog_phrase(words[a:b])
        ]
        if not spans:
            return None
        scores = self.type_similarities([" ".join(words[a:b]) for a, b in spans])
        best = None
        for (a, b), row in zip(spans, scores):
            order = np.argsort(-row)
            cosine = float(row[order[0]])
            margin = cosine - float(row[order[1]]) if len(order) > 1 else cosine
            if best is None or cosine > best[3]:
                best = (a, b, self.types[order[0]], cosine, margin)
        return best

    def resolve_one(self, text: str) -> str:
        """``text`` with its unexplained phrase replaced by a catalog product type, or unchanged."""
        words = catalog_words(text)
        found = self.best_type(" ".join(words))
        if found is None:
            return text
        a, b, name, cosine, margin = found
        if cosine < self.min_similarity or margin < self.min_margin:
            return text
        return " ".join(words[:a] + name.split() + words[b:])

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return [self.resolve_one(t) for t in texts]

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        payload = {
            "format": FORMAT,
            "types": self.types,
            "attribute_words": sorted(self.attribute_words),
            "vocabulary": sorted(self.vocabulary),
            "bigrams": sorted(self.bigrams),
            "min_similarity": self.min_similarity,
            "min_margin": self.min_margin,
            "semantic_model": self.semantic_model,
        }
        path.write_text(json.dumps(payload))
        return path

    @classmethod
    def load(cls, path: Path | str) -> ProductTypeResolver:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no product type resolver at {path} (save one with ProductTypeResolver.save)")
        payload = json.loads(path.read_text())
        if payload.get("format") != FORMAT:
            raise InputError(f"{path}: format {payload.get('format')!r}, expected {FORMAT!r}")
        return cls(
            payload["types"],
            payload["attribute_words"],
            payload["vocabulary"],
            payload["bigrams"],
            min_similarity=payload["min_similarity"],
            min_margin=payload["min_margin"],
            semantic_model=payload.get("semantic_model"),
        )
