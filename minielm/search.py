"""The search engine the rewriters are measured against: BM25 (bm25s) over product text.

Built once from a catalog, saved to a directory and loaded by evaluation and serving. Queries and
documents go through the same tokenizer (lower-case, English stop words, Snowball stemming).
Products that share no term with a query are not returned, so an empty result is a real
zero-result search.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import pandas as pd
import Stemmer
from bm25s.tokenization import Tokenized, Tokenizer

from minielm.data.esci import PRODUCT_ID
from minielm.data.text import product_text
from minielm.logs import get_logger

log = get_logger(__name__)

TOKEN_PATTERN = r"(?u)\b\w+\b"  # keep one-character tokens: sizes such as "7 quart"
META_FILE = "minielm_index.json"
PRODUCT_IDS_FILE = "product_ids.json"
VOCAB_FILE = "tokenizer_vocab.json"
FORMAT_VERSION = 1


def _tokenizer(language: str) -> Tokenizer:
    stemmer = Stemmer.Stemmer(language)
    return Tokenizer(lower=True, splitter=TOKEN_PATTERN, stopwords="en", stemmer=stemmer.stemWord)


class SearchIndex:
    """BM25 over ``product_text``; ``search`` returns product ids, best first."""

    def __init__(
        self, retriever: bm25s.BM25, tokenizer: Tokenizer, product_ids: list[str], k1: float, b: float, language: str
    ) -> None:
        self._retriever = retriever
        self._tokenizer = tokenizer
        self.product_ids = np.asarray(product_ids, dtype=object)
        self.k1, self.b, self.language = k1, b, language

    def __len__(self) -> int:
        return len(self.product_ids)

    @classmethod
    def build(
        cls,
        products: pd.DataFrame,
        k1: float = 1.2,
        b: float = 0.75,
        language: str = "english",
        show_progress: bool = False,
    ) -> SearchIndex:
        """Index every row of a products frame (ESCI layout) by its ``product_text``."""
        if PRODUCT_ID not in products.columns:
            raise KeyError(f"SearchIndex.build: the products frame has no {PRODUCT_ID!r} column")
        if len(products) == 0:
            raise ValueError("SearchIndex.build: the products frame is empty")
        texts = product_text(products).tolist()
        tokenizer = _tokenizer(language)
        token_ids = tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=show_progress)
        retriever = bm25s.BM25(k1=k1, b=b)
        vocab = tokenizer.get_vocab_dict()
        retriever.index(Tokenized(ids=token_ids, vocab=vocab), show_progress=show_progress)
        log.info("search index built", products=len(products), vocabulary=len(vocab))
        return cls(retriever, tokenizer, products[PRODUCT_ID].astype(str).tolist(), k1, b, language)

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory), show_progress=False)
        self._tokenizer.save_vocab(str(directory), vocab_name=VOCAB_FILE)
        (directory / PRODUCT_IDS_FILE).write_text(json.dumps(self.product_ids.tolist()))
        meta = {
            "format_version": FORMAT_VERSION,
            "engine": "bm25s",
            "bm25s_version": bm25s.__version__,
            "k1": self.k1,
            "b": self.b,
            "language": self.language,
            "n_products": len(self),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> SearchIndex:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved SearchIndex (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
        retriever = bm25s.BM25.load(str(directory), show_progress=False)
        tokenizer = _tokenizer(meta["language"])
        tokenizer.load_vocab(str(directory), vocab_name=VOCAB_FILE)
        product_ids = json.loads((directory / PRODUCT_IDS_FILE).read_text())
        return cls(retriever, tokenizer, product_ids, meta["k1"], meta["b"], meta["language"])

    def search_with_scores(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """For each query, up to ``k`` (product id, BM25 score) pairs, best first; no-match products left out."""
        if isinstance(queries, str):
            raise TypeError("search: pass a list of query strings, not one string")
        if k < 1:
            raise ValueError(f"search: k must be >= 1, got {k}")
        if len(queries) == 0:
            return []
        tokens = self._tokenizer.tokenize(
            [str(q) for q in queries], update_vocab=False, return_as="string", show_progress=False
        )
        return [self._top_k(query_tokens, k) for query_tokens in tokens]

    def _top_k(self, query_tokens: list[str], k: int) -> list[tuple[str, float]]:
        """Best ``k`` matching products for one tokenized query, by bm25s scores.

        Selection is done here rather than by ``BM25.retrieve``: catalog scores have many exact
        ties, on which numpy's argpartition degrades ~20x, and with JAX installed bm25s would pick
        jax.lax.top_k, slower still on CPU. Ties are broken by catalog order (lower index first).
        """
        token_ids = self._retriever.get_tokens_ids([t for t in query_tokens if t])
        if not token_ids:
            return []
        scores = self._retriever.get_scores_from_ids(token_ids)
        matching = np.flatnonzero(scores > 0)
        if len(matching) == 0:
            return []
        # float64 keeps every float32 score distinct after subtracting the tiny index term.
        keyed = scores[matching].astype(np.float64) - matching * 1e-12
        if len(matching) > k:
            chosen = np.argpartition(keyed, -k)[-k:]
            matching, keyed = matching[chosen], keyed[chosen]
        order = np.argsort(-keyed, kind="stable")
        best = matching[order]
        return list(zip(self.product_ids[best].tolist(), scores[best].astype(float).tolist()))

    def search(self, queries: Sequence[str], k: int) -> list[list[str]]:
        """For each query, up to ``k`` product ids, best first."""
        return [[pid for pid, _ in hits] for hits in self.search_with_scores(queries, k)]
