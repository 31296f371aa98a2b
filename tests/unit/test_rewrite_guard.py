"""The intent guard: spelling fixes, expansions, split/joined words and learned synonyms pass; dropped
content words, negations and numbers (and added ones) fail."""

from __future__ import annotations

import pytest

from minielm.models.rewrite_guard import (
    RewriteGuard,
    content_words,
    keeps_intent,
    learn_equivalents,
    lost_content_words,
)

CATALOG = "wireless headphones black coffee table water bottle running shoes yoga pants large navy cotton ounce"


@pytest.mark.parametrize(
    ("query", "rewrite"),
    [
        ("wireles hedphones blk", "wireless headphones black"),
        ("runing shoes", "running shoes"),
        ("coffee tabel", "coffee table"),
        ("plastic waterbottle 32oz", "plastic water bottle 32 ounce"),
        ("nvy cotton yogapants lg", "navy cotton yoga pants large"),
        ("laptop satnd cheap", "laptop stand"),
        ("best  Running Shoes", "running shoes"),
        ("sm-g991 case", "sm g991 case"),
    ],
)
def test_fixes_keep_intent(query, rewrite):
    assert keeps_intent(query, rewrite), lost_content_words(query, rewrite)


@pytest.mark.parametrize(
    ("query", "rewrite", "lost"),
    [
        ("wireles hedphones blk", "blue water bottle", ["wireles", "hedphones", "blk"]),
        ("coffee tabel", "trekora coffee filters", ["tabel"]),
        ("toddler water bottle without straw", "water bottle with straw", ["toddler", "without"]),
        ("table top bandsaw for metal", "table top bandsaw", ["metal"]),
        ("water bottle 32 oz", "water bottle 24 oz", ["32", "+24"]),
        ("sofa", "sofa no arms", ["+no"]),
    ],
)
def test_lost_words_are_named(query, rewrite, lost):
    assert lost_content_words(query, rewrite) == lost
    assert not keeps_intent(query, rewrite)


def test_filler_is_not_content():
    assert content_words("the best cheap running shoes for women without laces") == [
        "running",
        "shoes",
        "women",
        "without",
        "laces",
    ]


def test_vocabulary_blocks_corrupting_a_known_or_unknown_brand():
    guard = RewriteGuard.from_texts([CATALOG, "tresemme shampoo"])
    assert not guard.allows("tresemme shampoo", "treemme shampoo"), "a known word is never 'corrected' away"
    assert keeps_intent("tresemme shampoo", "treemme shampoo"), "without a vocabulary a close edit passes"
    assert guard.allows("wireles hedphones", "wireless headphones")
    assert not guard.allows("wireles hedphones", "wirelessly headphones"), "corrections land on known words"


def test_synonyms_come_from_repeated_pairs():
    pairs = [("navy couch", "navy sofa"), ("leather couch", "leather sofa"), ("big lamp", "tall lamp")]
    equivalents = learn_equivalents(pairs)
    assert equivalents == {"couch": {"sofa"}}
    guard = RewriteGuard.from_texts([CATALOG, "sofa lamp tall"], pairs)
    assert guard.allows("grey couch", "grey sofa") and not guard.allows("big lamp", "tall lamp")


def test_guard_round_trips(tmp_path):
    guard = RewriteGuard.from_texts([CATALOG], [("navy couch", "navy sofa")] * 2)
    loaded = RewriteGuard.load(guard.save(tmp_path / "guard.json"))
    assert loaded == guard
