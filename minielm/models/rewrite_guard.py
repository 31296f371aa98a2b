"""The intent check every served rewrite must pass: a rewrite may fix a word, never drop or change one.

A query's *content words* are every word except generic filler (articles, prepositions, marketing
words such as "best" or "cheap"). Each content word must survive into the rewrite: unchanged, with the
same stem, as a spelling fix (a close edit: one edit for words of 4-6 letters, two from 7; with a catalog
vocabulary, an unknown word may take one edit at 3 letters and two from 4 into a catalog word), as the
abbreviation it stands for (``blk`` -> ``black``: first letter kept, letters in order), split or
joined (``head phones`` <-> ``headphones``), or through an explicit equivalence (a synonym table the
caller learned, e.g. from training pairs). Negations (``without``, ``no``, ``free``...) and words with
digits (sizes, quantities, model numbers) must survive *exactly*, and the rewrite may not add any.

This is rule-based on purpose: it is the safety net under a learned rewriter, so it must not share the
model's mistakes. :func:`lost_content_words` is the one check; :class:`RewriteGuard` carries the catalog
vocabulary and learned synonyms a model saves with its weights.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import Stemmer
from rapidfuzz.distance import OSA

from minielm.models.phrase_similarity import shared_similarity

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)?")
_STEMMER = Stemmer.Stemmer("english")

NEGATIONS = frozenset({"without", "no", "not", "non", "free", "never", "except", "minus", "less", "nothing"})
_UNIT_GROUPS = (
    ("oz", "ounce", "ounces"),
    ("lb", "lbs", "pound", "pounds"),
    ("in", "inch", "inches"),
    ("ft", "foot", "feet"),
    ("qt", "quart", "quarts"),
    ("gal", "gallon", "gallons"),
    ("ml", "milliliter", "millilitre"),
    ("l", "liter", "litre", "liters", "litres"),
    ("mm", "millimeter", "millimetre"),
    ("cm", "centimeter", "centimetre"),
    ("pk", "pack", "packs"),
    ("pc", "pcs", "piece", "pieces"),
    ("ct", "count"),
)
UNIT_EQUIVALENTS = {unit: frozenset(group) - {unit} for group in _UNIT_GROUPS for unit in group}
FILLER_WORDS = frozenset(
    {
        # articles, prepositions, conjunctions
        *("a", "an", "the", "and", "or", "for", "of", "in", "on", "with", "to", "by", "at", "from", "into"),
        *("my", "your", "our", "his", "her", "their", "me", "i", "you", "we", "it", "its", "this", "that", "is"),
        # shopping filler that does not change which product is meant
        *("best", "cheap", "cheapest", "top", "rated", "high", "quality", "sale", "deal", "deals", "discount"),
        *("buy", "online", "shop", "shopping", "price", "prices", "good", "great", "nice", "popular", "new"),
        *(
            "affordable",
            "selling",
            "premium",
            "amazing",
            "awesome",
            "bestseller",
            "seller",
            "durable",
            "heavy",
            "duty",
            "gift",
            "gifts",
        ),
    }
)


def words(text: str) -> list[str]:
    """Lower-case word tokens; letters and digits part: ``32oz`` -> ``32 oz``, ``sm-g991`` -> ``sm g 991``."""
    return _WORD.findall(str(text).lower())


def is_protected(word: str) -> bool:
    """Negations and anything with a digit must survive a rewrite exactly."""
    return word in NEGATIONS or word[:1].isdigit()


def content_mask(tokens: Sequence[str]) -> list[bool]:
    """Which tokens carry intent: all but filler; a word right after a number is its unit (``32 in``);
    ``brand`` of ``brand new`` is filler."""
    return [
        (w not in FILLER_WORDS and not (w == "brand" and tokens[i + 1 : i + 2] == ["new"]))
        or w in NEGATIONS
        or (i > 0 and tokens[i - 1][:1].isdigit())
        for i, w in enumerate(tokens)
    ]


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry intent (everything but filler)."""
    tokens = words(text)
    return [w for w, keep in zip(tokens, content_mask(tokens)) if keep]


@cache
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def _allowed_edits(word: str) -> int:
    return 0 if len(word) < 4 else 1 if len(word) < 7 else 2


def _allowed_fix_edits(word: str) -> int:
    """Edits allowed when the catalog does not know ``word`` and the rewrite puts a catalog word in its place."""
    return 1 if len(word) == 3 else 2 if len(word) >= 4 else 0


def is_abbreviation(short: str, long: str) -> bool:
    """``blk`` of ``black``: same first letter, the short form's letters appear in order, and shorter."""
    if len(short) < 2 or len(short) >= len(long) or short[0] != long[0] or not short.isalpha():
        return False
    position = 0
    for letter in short:
        position = long.find(letter, position) + 1
        if position == 0:
            return False
    return True


def _close(word: str, other: str, vocabulary: Set[str] | None) -> bool:
    """``other`` is ``word`` itself, its stem-mate, or (for a word the vocabulary does not know) its
    spelling fix or expansion into a word the vocabulary knows."""
    if word == other or _stem(word) == _stem(other) or other in UNIT_EQUIVALENTS.get(word, ()):
        return True
    if vocabulary is not None and (word in vocabulary or other not in vocabulary):
        return False
    if other in NEGATIONS and not is_protected(word):  # only a typo of the negation itself: "withouut"
        return vocabulary is not None and len(word) >= 4 and OSA.distance(word, other, score_cutoff=1) <= 1
    if is_protected(word) or is_protected(other):
        return False
    limit = max(_allowed_edits(word), _allowed_edits(other))
    if vocabulary is not None:  # a word the catalog does not know, fixed into one it knows: typos of short words
        limit = max(limit, _allowed_fix_edits(word))
    return (limit > 0 and OSA.distance(word, other, score_cutoff=limit) <= limit) or is_abbreviation(word, other)


def _joined_pairs(tokens: list[str]) -> dict[str, tuple[str, str]]:
    """Adjacent word pairs written as one word (``water bottle`` -> ``waterbottle``); words only."""
    return {a + b: (a, b) for a, b in zip(tokens, tokens[1:]) if a.isalpha() and b.isalpha()}


def lost_content_words(
    query: str,
    rewrite: str,
    equivalents: Mapping[str, Set[str]] | None = None,
    vocabulary: Set[str] | None = None,
) -> list[str]:
    """The query's content words that do not survive into ``rewrite``, plus protected words the rewrite
    adds (prefixed ``+``). Empty means the rewrite keeps the query's intent.

    ``vocabulary`` (e.g. the catalog's words): when given, a word it knows is never "corrected" into
    another word, and an unknown word may only be corrected into a word it knows.
    """
    if " ".join(words(query)) == " ".join(words(rewrite)):
        return []
    equivalents = equivalents or {}
    query_words, rewrite_words = words(query), words(rewrite)
    targets = set(rewrite_words) | set(_joined_pairs(rewrite_words))
    joined_query = _joined_pairs(query_words)
    survived: set[str] = set()
    for joined, pair in joined_query.items():
        if any(_close(joined, t, vocabulary) for t in rewrite_words):
            survived.update(pair)
    lost = []
    for word in content_words(query):
        if word in survived or word in targets:
            continue
        if any(_close(word, t, vocabulary) for t in targets) or set(equivalents.get(word, ())) & targets:
            continue
        lost.append(word)
    query_set = set(query_words)
    split_off = _joined_positions(rewrite_words, query_set.__contains__)
    added = [
        f"+{w}"
        for i, w in enumerate(rewrite_words)
        if is_protected(w)
        and w not in query_set
        and i not in split_off
        and not any(_close(q, w, vocabulary) for q in query_words)
    ]
    return lost + added


def _joined_positions(rewrite_words: list[str], spells_query_word: Callable[[str], bool]) -> set[int]:
    """Positions of rewrite words that, joined with a neighbour, spell a query word (``withoutbowl`` ->
    ``without bowl``): a split, not an added word."""
    positions: set[int] = set()
    for i, (a, b) in enumerate(zip(rewrite_words, rewrite_words[1:])):
        if spells_query_word(a + b):
            positions.update((i, i + 1))
    return positions


def keeps_intent(
    query: str,
    rewrite: str,
    equivalents: Mapping[str, Set[str]] | None = None,
    vocabulary: Set[str] | None = None,
) -> bool:
    """True when the rewrite loses no content word and adds no negation or number."""
    return not lost_content_words(query, rewrite, equivalents, vocabulary)


def learn_equivalents(pairs: Iterable[tuple[str, str]], min_count: int = 2) -> dict[str, set[str]]:
    """Word synonyms seen in (query, rewrite) pairs: when exactly one query word is lost and exactly one
    new word appears, the pair counts once; pairs seen ``min_count`` times become equivalents."""
    counts: Counter[tuple[str, str]] = Counter()
    for query, rewrite in pairs:
        lost = [w for w in lost_content_words(query, rewrite) if not w.startswith("+")]
        added = sorted(set(content_words(rewrite)) - set(words(query)))
        if len(lost) == 1 and len(added) == 1 and not is_protected(lost[0]) and not is_protected(added[0]):
            counts[(lost[0], added[0])] += 1
    equivalents: dict[str, set[str]] = {}
    for (word, other), n in counts.items():
        if n >= min_count:
            equivalents.setdefault(word, set()).add(other)
    return equivalents


def _runs(tokens: Sequence[str], flags: Sequence[bool]) -> list[str]:
    """The maximal runs of flagged consecutive tokens, each as one phrase."""
    runs: list[list[str]] = []
    for i, (token, flag) in enumerate(zip(tokens, flags)):
        if flag:
            if i == 0 or not flags[i - 1]:
                runs.append([])
            runs[-1].append(token)
    return [" ".join(run) for run in runs]


def replaced_phrases(
    query: str,
    rewrite: str,
    lost: Sequence[str],
    equivalents: Mapping[str, Set[str]] | None = None,
    vocabulary: Set[str] | None = None,
) -> list[tuple[str, str]] | None:
    """Pair each run of ``lost`` query words with the run of new words the rewrite puts in its place
    (``lilac mesh chair`` -> ``purple mesh chair``: ``[("lilac", "purple")]``), in order.

    A rewrite word is *new* when it is a content word that no query word explains (not kept, corrected,
    joined, split or a known equivalent). None when the runs do not pair one to one, or a lost or new
    word is a negation or number (those never change), or the rewrite adds a protected word.
    """
    if not lost or any(w.startswith("+") or is_protected(w) for w in lost):
        return None
    equivalents = equivalents or {}
    query_words, rewrite_words = words(query), words(rewrite)
    query_set = set(query_words)
    explained_by_join = _joined_positions(
        rewrite_words, lambda joined: any(_close(q, joined, vocabulary) for q in query_words)
    )
    mask = content_mask(rewrite_words)
    new = [
        mask[i]
        and i not in explained_by_join
        and w not in query_set
        and not any(_close(q, w, vocabulary) or w in equivalents.get(q, ()) for q in query_words)
        for i, w in enumerate(rewrite_words)
    ]
    lost_set = set(lost)
    lost_runs = _runs(query_words, [w in lost_set for w in query_words])
    new_runs = _runs(rewrite_words, new)
    if len(lost_runs) != len(new_runs) or any(is_protected(w) for run in new_runs for w in run.split()):
        return None
    return list(zip(lost_runs, new_runs))


@dataclass
class RewriteGuard:
    """The intent check with what it knows about the catalog: its vocabulary and learned synonyms.

    ``semantic_threshold`` (off when None) lets a rewrite replace words the catalog does not know with
    words it knows when both hold: the two phrases mean the same to a pretrained sentence encoder
    (``semantic_model``: a sentence-transformers folder, None for all-MiniLM-L6-v2 from its wheel;
    cosine at least the threshold: ``shades`` -> ``sunglasses``, ``quilt`` -> ``duvet``), and the
    rewrite names something the catalog sells (all its content words occur together in one of
    ``catalog_word_sets``, the distinct words of each catalog text). A word the catalog knows is never
    replaced, unless ``replace_known_words`` is on and the query as typed names nothing the catalog sells
    (``ice chest`` -> ``cooler`` where no cooler is called an ice chest). Negations and numbers never change,
    and a dropped word without a replacement stays lost.
    Calibrate the threshold on validation queries, never on test: ``benchmarks/guard_calibration.py``.
    """

    vocabulary: frozenset[str] | None = None
    equivalents: dict[str, set[str]] = field(default_factory=dict)
    semantic_threshold: float | None = None
    semantic_model: str | None = None
    catalog_word_sets: tuple[frozenset[str], ...] | None = None
    replace_known_words: bool = False
    _postings: dict[str, set[int]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.semantic_threshold is not None:
            if not 0.0 < self.semantic_threshold <= 1.0:
                raise ValueError(
                    f"semantic_threshold: expected a cosine in (0, 1] or None, got {self.semantic_threshold}"
                )
            if self.vocabulary is None or not self.catalog_word_sets:
                raise ValueError(
                    "semantic_threshold needs the catalog vocabulary and catalog_word_sets (build the guard with "
                    "RewriteGuard.from_texts)"
                )

    @classmethod
    def from_texts(cls, texts: Iterable[str], pairs: Iterable[tuple[str, str]] = (), **options: Any) -> RewriteGuard:
        """Vocabulary (and, with ``semantic_threshold``, the word sets) from catalog texts (product texts,
        canonical queries), synonyms from rewrite pairs; ``options``: the semantic fields above."""
        texts = list(texts)
        if options.get("semantic_threshold") is not None and "catalog_word_sets" not in options:
            options["catalog_word_sets"] = tuple(dict.fromkeys(frozenset(words(text)) for text in texts))
        return cls(frozenset(w for text in texts for w in words(text)), learn_equivalents(pairs), **options)

    def lost(self, query: str, rewrite: str) -> list[str]:
        lost = lost_content_words(query, rewrite, self.equivalents, self.vocabulary)
        if lost and self.semantic_threshold is not None and self._same_meaning(query, rewrite, lost):
            return []
        return lost

    def names_catalog_item(self, text: str) -> bool:
        """All content words of ``text`` occur together in one catalog text."""
        if self._postings is None:
            self._postings = {}
            for position, word_set in enumerate(self.catalog_word_sets or ()):
                for word in word_set:
                    self._postings.setdefault(word, set()).add(position)
        found = [self._postings.get(w, set()) for w in content_words(text)]
        return bool(found) and bool(set.intersection(*found))

    def _same_meaning(self, query: str, rewrite: str, lost: list[str]) -> bool:
        replaced = replaced_phrases(query, rewrite, lost, self.equivalents, self.vocabulary)
        if not replaced:
            return False
        vocabulary = self.vocabulary or frozenset()
        known_may_change = self.replace_known_words and not self.names_catalog_item(query)
        for old, new in replaced:
            replaces_known = any(w in vocabulary for w in old.split())
            if (replaces_known and not known_may_change) or not all(w in vocabulary for w in new.split()):
                return False
        if not self.names_catalog_item(rewrite):
            return False
        similarity = shared_similarity(self.semantic_model)
        return all(similarity(old, new) >= self.semantic_threshold for old, new in replaced)

    def allows(self, query: str, rewrite: str) -> bool:
        return not self.lost(query, rewrite)

    def save(self, path: Path | str) -> Path:
        record = {
            "vocabulary": sorted(self.vocabulary) if self.vocabulary is not None else None,
            "equivalents": {w: sorted(o) for w, o in sorted(self.equivalents.items())},
            "semantic_threshold": self.semantic_threshold,
            "semantic_model": self.semantic_model,
            "replace_known_words": self.replace_known_words,
            "catalog_word_sets": [sorted(s) for s in self.catalog_word_sets] if self.catalog_word_sets else None,
        }
        Path(path).write_text(json.dumps(record))
        return Path(path)

    @classmethod
    def load(cls, path: Path | str) -> RewriteGuard:
        record = json.loads(Path(path).read_text())
        vocabulary = record.get("vocabulary")
        return cls(
            frozenset(vocabulary) if vocabulary is not None else None,
            {w: set(o) for w, o in record.get("equivalents", {}).items()},
            semantic_threshold=record.get("semantic_threshold"),
            semantic_model=record.get("semantic_model"),
            replace_known_words=record.get("replace_known_words", False),
            catalog_word_sets=tuple(frozenset(s) for s in record["catalog_word_sets"])
            if record.get("catalog_word_sets")
            else None,
        )
