"""Shopper noise applied to a canonical query, one kind at a time, from the fixed lexicon.

A query is a list of :class:`Slot` (brand, colour, material, type, size, filler). Each noise kind
rewrites one untouched slot, or reports that it does not apply. Misspellings are a deterministic
function of the word (two fixed variants per word, checked to change its stem), so the same
canonical word is always garbled the same few ways.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cache

import Stemmer

from minielm.data.vocabulary import (
    ABBREVIATIONS,
    COLOUR_SYNONYMS,
    FILLERS,
    MATERIAL_SYNONYMS,
    NOISE_KINDS,
    SPLITS,
    TYPES_BY_NAME,
    UNITS,
    NoiseRates,
)

_STEMMER = Stemmer.Stemmer("english")
MISSPELLING_VARIANTS = 2


@dataclass
class Slot:
    role: str  # brand | colour | material | type | size | filler
    text: str
    number: str = ""  # the size value, when the size has a unit
    unit: str = ""  # the size unit key in UNITS
    touched: bool = False


@cache
def misspell(word: str, variant: int) -> str:
    """A fixed misspelling of ``word`` (variant 0: a dropped letter, 1: two swapped letters)
    whose stem differs from the word's stem; the word itself when none exists."""
    stem = _STEMMER.stemWord(word)
    digest = int(hashlib.sha1(f"{word}:{variant}".encode()).hexdigest(), 16)
    n = len(word)
    for attempt in range(n):
        position = 1 + (digest + attempt) % max(1, n - 2)
        if variant % MISSPELLING_VARIANTS == 0:
            candidate = word[:position] + word[position + 1 :]
        else:
            candidate = word[:position] + word[position + 1 : position + 2] + word[position] + word[position + 2 :]
        if candidate != word and _STEMMER.stemWord(candidate) != stem:
            return candidate
    return word


def _words(text: str) -> list[str]:
    return text.split()


def _misspelling(slots: list[Slot], rng: random.Random) -> bool:
    choices = [
        (i, j)
        for i, slot in enumerate(slots)
        if not slot.touched and slot.role not in ("size", "filler")
        for j, word in enumerate(_words(slot.text))
        if len(word) >= 4 and word.isalpha()
    ]
    if not choices:
        return False
    i, j = rng.choice(choices)
    words = _words(slots[i].text)
    garbled = misspell(words[j], rng.randrange(MISSPELLING_VARIANTS))
    if garbled == words[j]:
        return False
    words[j] = garbled
    slots[i].text, slots[i].touched = " ".join(words), True
    return True


def _synonyms_of(slot: Slot) -> tuple[str, ...]:
    if slot.role == "type":
        return TYPES_BY_NAME[slot.text].synonyms
    if slot.role == "colour":
        return COLOUR_SYNONYMS.get(slot.text, ())
    if slot.role == "material":
        return MATERIAL_SYNONYMS.get(slot.text, ())
    return ()


def _synonym(slots: list[Slot], rng: random.Random) -> bool:
    choices = [i for i, slot in enumerate(slots) if not slot.touched and _synonyms_of(slot)]
    if not choices:
        return False
    i = rng.choice(choices)
    slots[i].text, slots[i].touched = rng.choice(_synonyms_of(slots[i])), True
    return True


_ABBREVIATION_KEYS = sorted(ABBREVIATIONS, key=len, reverse=True)


def _abbreviation_in(text: str) -> str | None:
    padded = f" {text} "
    return next((key for key in _ABBREVIATION_KEYS if f" {key} " in padded), None)


def _abbreviation(slots: list[Slot], rng: random.Random) -> bool:
    choices = [i for i, slot in enumerate(slots) if not slot.touched and _abbreviation_in(slot.text)]
    if not choices:
        return False
    i = rng.choice(choices)
    key = _abbreviation_in(slots[i].text)
    slots[i].text = f" {slots[i].text} ".replace(f" {key} ", f" {ABBREVIATIONS[key]} ", 1).strip()
    slots[i].touched = True
    return True


def _unit_variant(slots: list[Slot], rng: random.Random) -> bool:
    choices = [i for i, slot in enumerate(slots) if not slot.touched and slot.role == "size" and slot.unit]
    if not choices:
        return False
    i = rng.choice(choices)
    slots[i].text = rng.choice(UNITS[slots[i].unit][1]).format(n=slots[i].number)
    slots[i].touched = True
    return True


def _split_join(slots: list[Slot], rng: random.Random) -> bool:
    choices = []
    for i, slot in enumerate(slots):
        if slot.touched or slot.role in ("size", "filler"):
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


def _over_specification(slots: list[Slot], rng: random.Random) -> bool:
    fillers = rng.sample(FILLERS, rng.choice((1, 1, 2)))
    for filler in fillers:
        slot = Slot("filler", filler, touched=True)
        if rng.random() < 0.5:
            slots.insert(0, slot)
        else:
            slots.append(slot)
    return True


def _under_specification(slots: list[Slot], rng: random.Random) -> bool:
    choices = [
        i for i, slot in enumerate(slots) if not slot.touched and slot.role == "type" and TYPES_BY_NAME[slot.text].short
    ]
    if not choices:
        return False
    i = choices[0]
    slots[i].text, slots[i].touched = TYPES_BY_NAME[slots[i].text].short, True
    return True


_APPLY = {
    "misspelling": _misspelling,
    "synonym": _synonym,
    "abbreviation": _abbreviation,
    "unit_variant": _unit_variant,
    "split_join": _split_join,
    "over_specification": _over_specification,
    "under_specification": _under_specification,
}
assert set(_APPLY) == set(NOISE_KINDS)


def apply_noise(slots: list[Slot], rng: random.Random, rates: NoiseRates) -> tuple[str, list[str]]:
    """The noisy query text for canonical ``slots`` and the noise kinds that changed it."""
    slots = [Slot(s.role, s.text, s.number, s.unit) for s in slots]
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
            if _APPLY[kind](slots, rng):
                applied.append(kind)
    return " ".join(s.text for s in slots), applied
