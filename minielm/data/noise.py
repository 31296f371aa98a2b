"""Shopper noise applied to a canonical query, drawn at random per occurrence.

A query is a list of :class:`Slot` (brand, colour, material, feature, type, size, model, filler).
Each noise kind rewrites one untouched slot, or reports that it does not apply:

- ``misspelling``: one or two typos from a generative process (a keyboard-adjacent substitution,
  a transposition, a deletion, an insertion of a neighbouring key, a doubled or a dropped double
  letter), checked to change the word's stem;
- ``phonetic``: a sound-alike spelling (ph/f, ck/k, ee/ea, ...);
- ``synonym``, ``abbreviation``, ``unit_variant``: a form from the shopper lexicon
  (:mod:`minielm.data.vocabulary`); a share of those forms is held out for the test split only, another
  for validation only;
- ``split_join``: a compound split ("back pack") or two words joined ("waterbottle");
- ``over_specification``: filler words added (never an attribute removed);
- ``under_specification``: the product type shortened to its head noun.

Brands, model numbers, features (including negations such as "bpa free") and sizes are only ever
garbled in form, never dropped, so a rewrite that keeps intent exists for every noisy query.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import Stemmer

from minielm.data.vocabulary import (
    ABBREVIATIONS,
    COLOUR_SYNONYMS,
    FEATURE_SYNONYMS,
    FILLERS,
    MATERIAL_SYNONYMS,
    NOISE_KINDS,
    SPLITS,
    TYPES_BY_NAME,
    UNITS,
    NoiseRates,
    usable_in,
)

_STEMMER = Stemmer.Stemmer("english")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_PHONETIC_SWAPS = (
    ("ph", "f"),
    ("f", "ph"),
    ("ck", "k"),
    ("c", "k"),
    ("k", "c"),
    ("s", "z"),
    ("ee", "ea"),
    ("ea", "ee"),
    ("er", "or"),
    ("le", "el"),
    ("tion", "shun"),
    ("ou", "ow"),
    ("ie", "y"),
    ("y", "ie"),
    ("x", "ks"),
    ("qu", "kw"),
    ("ei", "ie"),
    ("ai", "ay"),
    ("oo", "u"),
    ("ght", "te"),
)
TYPO_OPERATIONS = ("substitute", "transpose", "delete", "insert", "double", "undouble")


def _keyboard_neighbours() -> dict[str, str]:
    neighbours: dict[str, set[str]] = {}
    for r, row in enumerate(_KEYBOARD_ROWS):
        for c, key in enumerate(row):
            near = neighbours.setdefault(key, set())
            for dr, dc in ((0, -1), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < len(_KEYBOARD_ROWS) and 0 <= cc < len(_KEYBOARD_ROWS[rr]):
                    near.add(_KEYBOARD_ROWS[rr][cc])
    return {key: "".join(sorted(near)) for key, near in neighbours.items()}


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()


@dataclass
class Slot:
    role: str  # brand | colour | material | feature | type | size | model | filler
    text: str
    number: str = ""  # the size value, when the size has a unit
    unit: str = ""  # the size unit key in UNITS
    touched: bool = False
    canonical: str = ""  # the slot's canonical text ('' for added filler)


def _changes_stem(word: str, candidate: str) -> bool:
    return candidate != word and _STEMMER.stemWord(candidate) != _STEMMER.stemWord(word)


def typo(word: str, rng: random.Random, operation: str | None = None) -> str:
    """``word`` with one random typo (``operation`` from TYPO_OPERATIONS, random when None) that changes
    its stem; the word itself when no such typo exists (short words, or the operation cannot apply)."""
    for _ in range(12):
        how = operation or rng.choice(TYPO_OPERATIONS)
        i = rng.randrange(1, len(word)) if len(word) > 1 else 0  # shoppers rarely get the first letter wrong
        if how == "substitute" and word[i] in KEYBOARD_NEIGHBOURS:
            candidate = word[:i] + rng.choice(KEYBOARD_NEIGHBOURS[word[i]]) + word[i + 1 :]
        elif how == "transpose" and i < len(word) - 1:
            candidate = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif how == "delete":
            candidate = word[:i] + word[i + 1 :]
        elif how == "insert" and word[i] in KEYBOARD_NEIGHBOURS:
            candidate = word[:i] + rng.choice(KEYBOARD_NEIGHBOURS[word[i]]) + word[i:]
        elif how == "double":
            candidate = word[:i] + word[i] + word[i:]
        elif how == "undouble":
            doubles = [j for j in range(1, len(word)) if word[j] == word[j - 1]]
            if not doubles:
                continue
            j = rng.choice(doubles)
            candidate = word[:j] + word[j + 1 :]
        else:
            continue
        if _changes_stem(word, candidate):
            return candidate
    return word


def phonetic_variant(word: str, rng: random.Random) -> str:
    """A sound-alike spelling of ``word`` that changes its stem; the word itself when none applies."""
    swaps = [(a, b) for a, b in _PHONETIC_SWAPS if a in word[1:]]
    rng.shuffle(swaps)
    for a, b in swaps:
        starts = [i for i in range(1, len(word)) if word.startswith(a, i)]
        i = rng.choice(starts)
        candidate = word[:i] + b + word[i + len(a) :]
        if _changes_stem(word, candidate):
            return candidate
    return word


def _words(text: str) -> list[str]:
    return text.split()


def _garble(slots: list[Slot], rng: random.Random, garbler, repeats: int = 1) -> bool:
    choices = [
        (i, j)
        for i, slot in enumerate(slots)
        if not slot.touched and slot.role not in ("size", "filler", "model")
        for j, word in enumerate(_words(slot.text))
        if len(word) >= 4 and word.isalpha()
    ]
    if not choices:
        return False
    i, j = rng.choice(choices)
    words = _words(slots[i].text)
    garbled = words[j]
    for _ in range(repeats):
        garbled = garbler(garbled, rng)
    if garbled == words[j]:
        return False
    words[j] = garbled
    slots[i].text, slots[i].touched = " ".join(words), True
    return True


def _pick(forms: tuple[str, ...] | list[str], rng: random.Random, data_split: str) -> str | None:
    usable = [f for f in forms if usable_in(f, data_split)]
    return rng.choice(usable) if usable else None


def _synonyms_of(slot: Slot) -> tuple[str, ...]:
    if slot.role == "type":
        return TYPES_BY_NAME[slot.text].synonyms
    lexicon = {"colour": COLOUR_SYNONYMS, "material": MATERIAL_SYNONYMS, "feature": FEATURE_SYNONYMS}.get(slot.role)
    return lexicon.get(slot.text, ()) if lexicon else ()


def _synonym(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    choices = [(i, _pick(_synonyms_of(s), rng, data_split)) for i, s in enumerate(slots) if not s.touched]
    choices = [(i, form) for i, form in choices if form]
    if not choices:
        return False
    i, form = rng.choice(choices)
    slots[i].text, slots[i].touched = form, True
    return True


_ABBREVIATION_KEYS = sorted(ABBREVIATIONS, key=len, reverse=True)


def _abbreviations_in(text: str, data_split: str) -> list[str]:
    padded = f" {text} "
    return [key for key in _ABBREVIATION_KEYS if f" {key} " in padded and usable_in(ABBREVIATIONS[key], data_split)]


def _abbreviation(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    choices = [
        (i, key)
        for i, slot in enumerate(slots)
        if not slot.touched and slot.role not in ("filler", "model")
        for key in _abbreviations_in(slot.text, data_split)
    ]
    if not choices:
        return False
    i, key = rng.choice(choices)
    slots[i].text = f" {slots[i].text} ".replace(f" {key} ", f" {ABBREVIATIONS[key]} ", 1).strip()
    slots[i].touched = True
    return True


def _unit_variant(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    choices = [
        (i, form)
        for i, slot in enumerate(slots)
        if not slot.touched and slot.role == "size" and slot.unit
        for form in [_pick(UNITS[slot.unit][1], rng, data_split)]
        if form
    ]
    if not choices:
        return False
    i, form = rng.choice(choices)
    slots[i].text, slots[i].touched = form.format(n=slots[i].number), True
    return True


def _split_join(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    choices = []
    for i, slot in enumerate(slots):
        if slot.touched or slot.role in ("size", "filler", "model"):
            continue
        words = _words(slot.text)
        choices += [(i, "split", j) for j, word in enumerate(words) if word in SPLITS]
        choices += [(i, "join", j) for j in range(len(words) - 1)]
    if not choices:
        return False
    i, how, j = rng.choice(choices)
    words = _words(slots[i].text)
    if how == "split":
        words[j] = SPLITS[words[j]]
    else:
        words[j : j + 2] = [words[j] + words[j + 1]]
    slots[i].text, slots[i].touched = " ".join(words), True
    return True


def _over_specification(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    for filler in rng.sample(FILLERS, rng.choice((1, 1, 2))):
        slot = Slot("filler", filler, touched=True)
        if rng.random() < 0.5:
            slots.insert(0, slot)
        else:
            slots.append(slot)
    return True


def _under_specification(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    choices = [
        i for i, slot in enumerate(slots) if not slot.touched and slot.role == "type" and TYPES_BY_NAME[slot.text].short
    ]
    if not choices:
        return False
    i = choices[0]
    slots[i].text, slots[i].touched = TYPES_BY_NAME[slots[i].text].short, True
    return True


def _misspelling(slots: list[Slot], rng: random.Random, data_split: str, second_typo: float = 0.0) -> bool:
    return _garble(slots, rng, typo, repeats=2 if rng.random() < second_typo else 1)


def _phonetic(slots: list[Slot], rng: random.Random, data_split: str) -> bool:
    return _garble(slots, rng, phonetic_variant)


_APPLY = {
    "misspelling": _misspelling,
    "phonetic": _phonetic,
    "synonym": _synonym,
    "abbreviation": _abbreviation,
    "unit_variant": _unit_variant,
    "split_join": _split_join,
    "over_specification": _over_specification,
    "under_specification": _under_specification,
}
assert set(_APPLY) == set(NOISE_KINDS)


def noisy_slots(
    slots: list[Slot], rng: random.Random, rates: NoiseRates, data_split: str = "test"
) -> tuple[list[Slot], list[str]]:
    """Noisy copies of canonical ``slots`` (each remembering its canonical text) and the noise kinds
    that changed them. Queries of ``data_split`` draw only the lexicon forms that split may use
    (:func:`~minielm.data.vocabulary.usable_in`)."""
    slots = [Slot(s.role, s.text, s.number, s.unit, canonical=s.text) for s in slots]
    applied: list[str] = []
    if rng.random() >= rates.clean_fraction:
        wanted = 1
        while wanted < rates.max_kinds and rng.random() < rates.extra_kind_probability:
            wanted += 1
        kinds = list(rates.weights)
        weights = [rates.weights[k] for k in kinds]
        while kinds and len(applied) < wanted:
            kind = rng.choices(kinds, weights=weights)[0]
            index = kinds.index(kind)
            del kinds[index], weights[index]
            if kind == "misspelling":
                changed = _misspelling(slots, rng, data_split, rates.second_typo_probability)
            else:
                changed = _APPLY[kind](slots, rng, data_split)
            if changed:
                applied.append(kind)
    return slots, applied


def slot_edits(slots: list[Slot]) -> list[tuple[str, str]]:
    """(noisy text, canonical text) of every slot the noise changed (added filler maps to '')."""
    return [(s.text, s.canonical) for s in slots if s.text != s.canonical]


def apply_noise(
    slots: list[Slot], rng: random.Random, rates: NoiseRates, data_split: str = "test"
) -> tuple[str, list[str]]:
    """The noisy query text for canonical ``slots`` and the noise kinds that changed it."""
    noisy, applied = noisy_slots(slots, rng, rates, data_split)
    return " ".join(s.text for s in noisy), applied
