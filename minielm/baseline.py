"""The strongest simple rewriter: a phrase table mined from training pairs plus spelling correction.

Every learned rewriter is measured against it (``minielm eval``, the quality gate), and the platform
serves it when no learned model passes the gate. It is a :class:`~minielm.models.interfaces.QueryRewriter`:

1. **Phrase table** (only when the training data has ``canonical_query``): each noisy query is aligned
   with its canonical rewrite (:func:`minielm.data.alignment.aligned_edits`); every (noisy span ->
   canonical span) edit is counted and the most frequent target of each span kept. Numbers are
   templated, so ``6qt -> 6 quart`` also rewrites ``8qt``. Rewriting replaces spans longest first.
2. **Spelling correction** of the remaining tokens the catalog does not know: joined or split words
   ("foodprocessor", "head phones") and the nearest catalog word within Damerau-Levenshtein distance
   1 (words up to 6 letters) or 2 (longer), ties broken by catalog frequency. Numbers and model
   numbers are never touched. Without ``canonical_query`` (real data) only this step runs.

3. **Product type resolution** (optional, ``type_resolver``): a phrase the steps above leave unexplained
   is mapped to a catalog product type by :class:`~minielm.models.product_type_resolver.ProductTypeResolver`
   (learned similarity, rule-based firing), saved beside the table.

It stays safe on queries it cannot help: a phrase applies only when its source holds a word the
catalog does not know (so catalog words are never swapped for others), and a query is left
unchanged when most of its words are neither known to the catalog nor correctable (out of domain).
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein

from minielm.data.alignment import aligned_edits
from minielm.data.esci import CANONICAL_QUERY, QUERY, QUERY_ID, SPLIT
from minielm.data.text import catalog_words, product_text
from minielm.errors import InputError
from minielm.intent import NEGATIONS
from minielm.logs import get_logger
from minielm.models.product_type_resolver import RESOLVER_FILE, ProductTypeResolver

log = get_logger(__name__)

BASELINE_FILE = "phrase_table_baseline.json"
# What serving's loader and the registry read to load a saved baseline (metadata.json "model_class");
# register it with ``ModelRegistry.register(name, dir, {"model_class": MODEL_CLASS, ...})``.
MODEL_CLASS = "minielm.baseline:PhraseTableRewriter"
FORMAT = "minielm.phrase_table_baseline/1"
MIN_CORRECTED_LENGTH = 4  # "not", "tub", "mm": too short to tell a typo from another word
MAX_ONE_EDIT_LENGTH = 6  # words up to this long are corrected within distance 1, longer ones within 2
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _template(text: str) -> tuple[str, list[str]]:
    """``"6qt"`` -> (``"#qt"``, ``["6"]``)."""
    return _NUMBER.sub("#", text), _NUMBER.findall(text)


def _fill(template: str, numbers: list[str]) -> str:
    values = iter(numbers)
    return re.sub("#", lambda _: next(values, "#"), template)


def catalog_vocabulary(products: pd.DataFrame) -> Counter:
    """Word -> count over every product's text (titles and attributes), lower-cased."""
    counts: Counter = Counter()
    for text in product_text(products):
        counts.update(catalog_words(text))
    return counts


def mine_phrase_table(
    noisy: Sequence[str], canonical: Sequence[str], max_span: int = 4, min_precision: float = 0.5
) -> dict[str, str]:
    """Noisy span (numbers as ``#``) -> the canonical span it most often aligns to (numbers as ``#``).

    A span is kept only when that edit accounts for at least ``min_precision`` of the span's
    occurrences in the noisy queries: "steel" is edited to "stainless steel" in some queries but left
    alone in far more, so rewriting every "steel" would hurt.
    """
    counts: dict[str, Counter] = {}
    for query, target in zip(noisy, canonical):
        for source_span, target_span in aligned_edits(query.lower(), target.lower()):
            if not source_span or len(source_span.split()) > max_span:
                continue
            source_key, source_numbers = _template(source_span)
            target_key, target_numbers = _template(target_span)
            if source_numbers != target_numbers:  # the numbers changed: only the literal edit is safe
                source_key, target_key = source_span, target_span
            counts.setdefault(source_key, Counter())[target_key] += 1
    occurrences: Counter = Counter()
    for query in noisy:
        words = query.lower().split()
        for n in range(1, max_span + 1):
            for start in range(len(words) - n + 1):
                span = " ".join(words[start : start + n])
                key = _template(span)[0]
                occurrences.update({k for k in (span, key) if k in counts})
    table = {}
    for source, targets in counts.items():
        target, count = targets.most_common(1)[0]
        if count >= min_precision * max(occurrences[source], 1):
            table[source] = target
    return table


def out_of_fold_rewrites(vocabulary: Counter, examples: pd.DataFrame, folds: int) -> dict[str, str]:
    """Each noisy query of ``examples`` (with ``canonical_query``) -> its rewrite by a phrase table mined
    from the *other* folds of the queries (folds by query id), with the same spelling vocabulary.

    What a model stacked on the baseline should learn from: on its own training queries, a table mined
    from them has memorised their noise, while on new queries it meets forms it never saw.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    pairs = examples.drop_duplicates(QUERY_ID)
    fold = pairs[QUERY_ID].astype(str).map(lambda q: zlib.crc32(q.encode()) % folds)
    rewrites: dict[str, str] = {}
    for k in range(folds):
        rest = pairs[fold != k]
        table = mine_phrase_table(rest[QUERY].astype(str).tolist(), rest[CANONICAL_QUERY].astype(str).tolist())
        rewriter = PhraseTableRewriter(table, vocabulary, version=f"fold-{k}")
        for query in pairs.loc[fold == k, QUERY].astype(str):
            rewrites.setdefault(query, rewriter.rewrite_one(query))
    return rewrites


class PhraseTableRewriter:
    """Phrase table + catalog spelling correction (see the module docstring)."""

    def __init__(
        self,
        phrases: dict[str, str],
        vocabulary: Counter | dict[str, int],
        version: str = "baseline",
        type_resolver: ProductTypeResolver | None = None,
    ):
        self.phrases = dict(phrases)
        self.vocabulary = Counter(vocabulary)
        self.version = version
        self.type_resolver = type_resolver
        self._max_span = max((len(source.split()) for source in self.phrases), default=0)
        # Most frequent first, so that the nearest-word search breaks ties by frequency.
        self._words = [w for w, _ in self.vocabulary.most_common() if w.isalpha() and len(w) >= 2]

    @classmethod
    def fit(
        cls,
        products: pd.DataFrame,
        examples: pd.DataFrame | None = None,
        version: str = "baseline",
        type_resolver: ProductTypeResolver | None = None,
    ):
        """Mine the phrase table from ``examples`` (their train split when they have one; none when they
        lack ``canonical_query``) and the spelling vocabulary from ``products``."""
        vocabulary = catalog_vocabulary(products)
        phrases: dict[str, str] = {}
        if examples is not None and CANONICAL_QUERY in examples.columns:
            pairs = examples
            if SPLIT in pairs.columns:
                pairs = pairs[pairs[SPLIT] == "train"]
            pairs = pairs.drop_duplicates(QUERY_ID)
            phrases = mine_phrase_table(pairs[QUERY].astype(str).tolist(), pairs[CANONICAL_QUERY].astype(str).tolist())
        log.info("phrase-table baseline fitted", phrases=len(phrases), vocabulary=len(vocabulary))
        return cls(phrases, vocabulary, version=version, type_resolver=type_resolver)

    def _correct(self, word: str) -> str:
        if word in self.vocabulary or not word.isalpha() or len(word) < MIN_CORRECTED_LENGTH or word in NEGATIONS:
            return word
        for cut in range(2, len(word) - 1):  # a joined pair of catalog words
            left, right = word[:cut], word[cut:]
            if self.vocabulary.get(left) and self.vocabulary.get(right) and len(left) > 2 and len(right) > 2:
                return f"{left} {right}"
        limit = 1 if len(word) <= MAX_ONE_EDIT_LENGTH else 2
        match = process.extractOne(word, self._words, scorer=DamerauLevenshtein.distance, score_cutoff=limit)
        return match[0] if match else word

    def _phrase_at(self, words: list[str], start: int) -> tuple[int, str] | None:
        for n in range(min(self._max_span, len(words) - start), 0, -1):
            if all(w in self.vocabulary for w in words[start : start + n]):
                continue
            span = " ".join(words[start : start + n])
            if span in self.phrases:
                return n, self.phrases[span]
            key, numbers = _template(span)
            if numbers and key in self.phrases:
                return n, _fill(self.phrases[key], numbers)
        return None

    def rewrite_one(self, query: str) -> str:
        words = catalog_words(query)
        out: list[str] = []
        i = 0
        while i < len(words):
            found = self._phrase_at(words, i)
            if found:
                n, target = found
                out += target.split()
                i += n
                continue
            word = words[i]
            following = words[i + 1] if i + 1 < len(words) else None
            split_word = following and (word not in self.vocabulary or following not in self.vocabulary)
            if split_word and self.vocabulary.get(word + following):  # a split catalog word: "head phones"
                out.append(word + following)
                i += 2
                continue
            out += self._correct(word).split()
            i += 1
        alphabetic = [w for w in out if w.isalpha()]
        unknown = [w for w in alphabetic if w not in self.vocabulary]
        if len(unknown) * 2 > len(alphabetic):  # mostly words the catalog does not know: out of domain
            return " ".join(words)
        rewritten = " ".join(out)
        return self.type_resolver.resolve_one(rewritten) if self.type_resolver is not None else rewritten

    def rewrite(self, queries: Sequence[str], num_return: int = 1, do_sample: bool = False) -> list[list[str]]:
        """One rewrite per query (the table is deterministic: ``num_return`` copies of it)."""
        return [[self.rewrite_one(q)] * max(1, num_return) for q in queries]

    def __call__(self, queries: Sequence[str]) -> list[str]:
        return [self.rewrite_one(q) for q in queries]

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "version": self.version,
            "phrases": self.phrases,
            "vocabulary": dict(self.vocabulary),
        }
        (directory / BASELINE_FILE).write_text(json.dumps(payload))
        if self.type_resolver is not None:
            self.type_resolver.save(directory / RESOLVER_FILE)
        (directory / "metadata.json").write_text(json.dumps({"model_class": MODEL_CLASS, "version": self.version}))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> PhraseTableRewriter:
        path = Path(directory) / BASELINE_FILE
        if not path.is_file():
            raise InputError(f"no phrase-table baseline at {path} (save one with PhraseTableRewriter.save)")
        payload = json.loads(path.read_text())
        if payload.get("format") != FORMAT:
            raise InputError(f"{path}: format {payload.get('format')!r}, expected {FORMAT!r}")
        resolver_path = Path(directory) / RESOLVER_FILE
        resolver = ProductTypeResolver.load(resolver_path) if resolver_path.is_file() else None
        return cls(
            payload["phrases"],
            payload["vocabulary"],
            version=payload.get("version", "baseline"),
            type_resolver=resolver,
        )

    @staticmethod
    def is_saved_in(directory: Path | str) -> bool:
        return (Path(directory) / BASELINE_FILE).is_file()
