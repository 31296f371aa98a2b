"""Does a rewrite keep what the shopper asked for? Harm and intent checks for any rewriter.

A rewrite *harms* a query when it loses a content word of the query or changes its intent:

- a **negation** is dropped ("without", "no", "free", "non", "not") or one is added;
- a **brand**, a **number** (size, quantity) or a **model number** ("x200", "sm-g991") is dropped;
- any other non-filler word is dropped without surviving in another form.

A word survives in another form when the rewrite holds it verbatim, with the same stem, corrected
(Damerau-Levenshtein distance 1 for short words, 2 for longer ones), split or joined ("backpack" /
"back pack"), or mapped through the shopper lexicon (synonym, abbreviation, unit variant) to its
canonical form. Filler words ("best", "cheap", "on sale") may be dropped. Measured on clean and
out-of-catalog synthetic queries (whose right rewrite is the query itself) and on real query
strings (where "unchanged or changed without losing a content word" is the safe share).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import Stemmer
from rapidfuzz.distance import DamerauLevenshtein

from minielm.data.vocabulary import (
    ABBREVIATIONS,
    ALL_BRANDS,
    COLOUR_SYNONYMS,
    FEATURE_SYNONYMS,
    FILLERS,
    MATERIAL_SYNONYMS,
    PRODUCT_TYPES,
    SPLITS,
    UNITS,
)
from minielm.errors import InputError

NEGATIONS = frozenset({"no", "not", "without", "free", "non", "never", "none"})
STOP_WORDS = frozenset({"a", "an", "the", "for", "with", "and", "or", "of", "in", "on", "to", "by", "&", "-", "+"})
FILLER_WORDS = frozenset(w for filler in FILLERS for w in filler.split())
HARM_KINDS = ("negation", "brand", "number", "model_number", "content_word")
_TOKEN = re.compile(r"[a-z0-9]+(?:[.\-'][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_STEMMER = Stemmer.Stemmer("english")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens; hyphenated model numbers and decimals stay whole ("sm-g991", "1.5")."""
    return _TOKEN.findall(str(text).lower())


def _unit_suffixes() -> frozenset[str]:
    suffixes = {"pc", "pcs", "in", "inch", "ft", "oz", "lb", "lbs", "mm", "cm", "m", "g", "kg", "ml", "l"}
    for canonical, variants in UNITS.values():
        suffixes.add(canonical)
        for variant in variants:
            suffixes.update(re.findall(r"[a-z]+", variant.replace("{n}", " ")))
    return frozenset(suffixes)


UNIT_SUFFIXES = _unit_suffixes()


def _lexicon() -> dict[str, str]:
    """Shopper form -> canonical form, for every lexicon entry (held-out forms included)."""
    forms: dict[str, str] = {}
    for product_type in PRODUCT_TYPES:
        for synonym in product_type.synonyms:
            forms.setdefault(synonym, product_type.name)
    for table in (COLOUR_SYNONYMS, MATERIAL_SYNONYMS, FEATURE_SYNONYMS):
        for canonical, synonyms in table.items():
            for synonym in synonyms:
                forms.setdefault(synonym, canonical)
    for canonical, abbreviation in ABBREVIATIONS.items():
        forms.setdefault(abbreviation, canonical)
    for compound, split in SPLITS.items():
        forms.setdefault(split, compound)
    return forms


LEXICON = _lexicon()
_LEXICON_BY_LENGTH = sorted(LEXICON, key=lambda form: -len(form.split()))


_QUANTITY = re.compile(r"^(?:\d+(?:\.\d+)?)(?:-?([a-z]+))?$|^(?:size|sz|us)(\d+)$")


def is_number_with_unit(token: str) -> bool:
    """``6qt``, ``10-pack``, ``1.5l``, ``size10``: a quantity, not a model number (``x200``, ``500d``)."""
    match = _QUANTITY.match(token)
    return bool(match) and (match.group(1) is None or match.group(1) in UNIT_SUFFIXES)


def is_model_number(token: str) -> bool:
    return bool(re.search(r"\d", token)) and bool(re.search(r"[a-z]", token)) and not is_number_with_unit(token)


@cache
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def _max_edits(word: str) -> int:
    return 1 if len(word) <= 6 else 2


@dataclass(frozen=True)
class IntentCheck:
    """The verdict on one (query, rewrite) pair."""

    changed: bool
    harmed: bool
    lost: tuple[tuple[str, str], ...] = ()  # (word, harm kind) of each word the rewrite lost
    added_negations: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "harmed": self.harmed,
            "lost": [list(item) for item in self.lost],
            "added_negations": list(self.added_negations),
            "reasons": list(self.reasons),
        }


def _harm_kind(word: str, brands: frozenset[str]) -> str:
    if word in NEGATIONS:
        return "negation"
    if word in brands:
        return "brand"
    if is_model_number(word):
        return "model_number"
    if _NUMBER.search(word):
        return "number"
    return "content_word"


def _survives(
    index: int, words: list[str], rewrite_words: list[str], rewrite_text: str, lexicon_kept: set[int]
) -> bool:
    word = words[index]
    if word in rewrite_words or index in lexicon_kept:
        return True
    if _NUMBER.search(word):
        if is_model_number(word):
            compact = re.sub(r"[^a-z0-9]", "", word)
            return compact in re.sub(r"[^a-z0-9]", "", rewrite_text)
        return all(number in _NUMBER.findall(rewrite_text) for number in _NUMBER.findall(word))
    squeezed = rewrite_text.replace(" ", "")
    if len(word) >= 4 and word in squeezed and word not in rewrite_text:  # "back pack" -> "backpack" ...
        return True
    for left, right in zip(rewrite_words, rewrite_words[1:]):  # ... and "backpack" -> "back pack"
        if left + right == word:
            return True
    stem = _stem(word)
    limit = _max_edits(word)
    for other in rewrite_words:
        if _stem(other) == stem:
            return True
        if other.isalpha() and DamerauLevenshtein.distance(word, other, score_cutoff=limit) <= limit:
            return True
    return False


def _lexicon_kept(words: list[str], rewrite_words: set[str]) -> set[int]:
    """Positions of query words that belong to a lexicon form whose canonical words are all in the rewrite."""
    kept: set[int] = set()
    padded = f" {' '.join(words)} "
    for form in _LEXICON_BY_LENGTH:
        if f" {form} " not in padded:
            continue
        if not set(LEXICON[form].split()) <= rewrite_words:
            continue
        n = len(form.split())
        for start in range(len(words) - n + 1):
            if " ".join(words[start : start + n]) == form:
                kept.update(range(start, start + n))
    return kept


def intent_check(
    query: str, rewrite: str, brands: Iterable[str] | None = None, reference: str | None = None
) -> IntentCheck:
    """Whether ``rewrite`` keeps the intent of ``query`` (see the module docstring for the rules).

    ``brands`` adds brand names known to the caller (a catalog's) to the synthetic vocabulary's.
    ``reference`` is a rewrite known to keep the intent (the synthetic canonical query): words it
    also appears to lose, and negations it also adds, are not held against ``rewrite`` (a heavily
    garbled word the checker cannot match is not the rewriter's harm).
    """
    brand_set = ALL_BRANDS | frozenset(b.lower() for b in brands) if brands else ALL_BRANDS
    words, rewrite_words = tokens(query), tokens(rewrite)
    changed = words != rewrite_words
    if not changed:
        return IntentCheck(changed=False, harmed=False)
    rewrite_text = " ".join(rewrite_words)
    lexicon_kept = _lexicon_kept(words, set(rewrite_words))
    lost = []
    for index, word in enumerate(words):
        if (
            word in STOP_WORDS
            or (word in FILLER_WORDS and word not in NEGATIONS)
            or (len(word) == 1 and word.isalpha())
        ):
            continue
        if not _survives(index, words, rewrite_words, rewrite_text, lexicon_kept):
            lost.append((word, _harm_kind(word, brand_set)))
    joined = "".join(words)
    added = tuple(w for w in dict.fromkeys(rewrite_words) if w in NEGATIONS and w not in words and w not in joined)
    if reference is not None:
        excused = intent_check(query, reference, brands)
        lost = [item for item in lost if item not in excused.lost]
        added = tuple(w for w in added if w not in excused.added_negations)
    reasons = [f"lost {kind} {word!r}" for word, kind in lost] + [f"added negation {w!r}" for w in added]
    return IntentCheck(
        changed=True, harmed=bool(lost or added), lost=tuple(lost), added_negations=added, reasons=tuple(reasons)
    )


def harm_summary(
    queries: Sequence[str],
    rewrites: Sequence[str],
    classes: Sequence[str] | None = None,
    brands: Iterable[str] | None = None,
    max_examples: int = 20,
) -> dict[str, Any]:
    """Harm over a set of (query, rewrite) pairs: rates overall and per class, and harmed examples.

    ``harm_rate`` is the share of queries whose rewrite loses a content word or changes intent;
    ``safe_share`` is its complement (unchanged, or changed without harm); ``changed_share`` the share
    rewritten at all; ``by_kind`` counts lost words per harm kind.
    """
    if len(queries) != len(rewrites):
        raise InputError(f"harm_summary: {len(queries)} queries but {len(rewrites)} rewrites")
    if classes is not None and len(classes) != len(queries):
        raise InputError(f"harm_summary: {len(queries)} queries but {len(classes)} classes")
    brand_set = frozenset(brands) if brands else None
    checks = [intent_check(q, r, brand_set) for q, r in zip(queries, rewrites)]
    n = len(checks)
    harmed = sum(c.harmed for c in checks)
    kinds = Counter(kind for c in checks for _, kind in c.lost)
    kinds.update({"negation": sum(bool(c.added_negations) for c in checks)})
    summary: dict[str, Any] = {
        "n_queries": n,
        "harm_rate": harmed / n if n else 0.0,
        "safe_share": 1.0 - harmed / n if n else 1.0,
        "changed_share": sum(c.changed for c in checks) / n if n else 0.0,
        "by_kind": {kind: kinds.get(kind, 0) for kind in HARM_KINDS},
        "harmed_examples": [
            {"query": q, "rewrite": r, "reasons": list(c.reasons)}
            for q, r, c in zip(queries, rewrites, checks)
            if c.harmed
        ][:max_examples],
    }
    if classes is not None:
        by_class: dict[str, list[IntentCheck]] = {}
        for name, check in zip(classes, checks):
            by_class.setdefault(name, []).append(check)
        summary["by_class"] = {
            name: {
                "n_queries": len(group),
                "harm_rate": sum(c.harmed for c in group) / len(group),
                "changed_share": sum(c.changed for c in group) / len(group),
            }
            for name, group in sorted(by_class.items())
        }
    return summary


def harm_rate(queries: Sequence[str], rewrites: Sequence[str], brands: Iterable[str] | None = None) -> float:
    """Share of ``queries`` whose rewrite loses a content word or changes intent."""
    return harm_summary(queries, rewrites, brands=brands, max_examples=0)["harm_rate"]


def mapping_harm(queries: Mapping[str, str], rewrites: Mapping[str, str]) -> dict[str, IntentCheck]:
    """query id -> intent check, for rewrites keyed like the queries."""
    return {q: intent_check(queries[q], rewrites[q]) for q in queries}
