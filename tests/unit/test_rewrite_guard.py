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
    assert content_words("affordable best selling lamp") == ["lamp"]


def test_vocabulary_blocks_corrupting_a_known_or_unknown_brand():
    guard = RewriteGuard.from_texts([CATALOG, "tresemme shampoo"])
    assert not guard.allows("tresemme shampoo", "treemme shampoo"), "a known word is never 'corrected' away"
    assert keeps_intent("tresemme shampoo", "treemme shampoo"), "without a vocabulary a close edit passes"
    assert guard.allows("wireles hedphones", "wireless headphones")
    assert not guard.allows("wireles hedphones", "wirelessly headphones"), "corrections land on known words"


def test_a_word_the_catalog_does_not_know_may_take_two_edits_into_one_it_knows():
    guard = RewriteGuard.from_texts(["duvet cover scale kitchen clover lamp fast charger without lid"])
    assert guard.allows("pink duvet cboer", "pink duvet cover") and guard.allows("fst charger", "fast charger")
    assert not keeps_intent("pink duvet cboer", "pink duvet cover"), "without a vocabulary, one edit for 5 letters"
    assert not guard.allows("duvet cover", "duvet clover"), "a word the catalog knows is never changed"
    assert not guard.allows("pink duvet cboer", "pink duvet lamp"), "more than two edits is another word"


def test_only_a_typo_of_a_negation_may_become_one():
    guard = RewriteGuard.from_texts(["kettle lid with without"])
    assert guard.allows("kettle withouut lid", "kettle without lid")
    assert not guard.allows("kettle with lid", "kettle without lid"), "a known word never turns into a negation"
    assert not guard.allows("kettle withhh lid", "kettle without lid"), "a negation only within one edit"
    assert not RewriteGuard().allows("kettle withouut lid", "kettle without lid"), "needs the catalog vocabulary"


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


def test_a_joined_negation_may_be_split_and_brand_new_is_filler():
    assert keeps_intent("plastic cat tree withoutbowl", "plastic cat tree without bowl")
    assert keeps_intent("orange jump rope nonslip", "orange jump rope non slip")
    assert lost_content_words("orange jump rope slip", "orange jump rope non slip") == ["+non"]
    assert content_words("brand new coffee mug") == ["coffee", "mug"]
    assert content_words("coffee mug brand") == ["coffee", "mug", "brand"], "only 'brand new' is filler"


SEMANTIC_CATALOG = [
    "ivory sunglasses with case 2 pack",
    "white duvet cover",
    "red office chair",
    "purple office chair",
    "trailmark running shoes",
    "ivory kettle",
]


@pytest.fixture(scope="module")
def semantic_guard():
    return RewriteGuard.from_texts(SEMANTIC_CATALOG, semantic_threshold=0.55)


@pytest.mark.slow  # loads all-MiniLM-L6-v2 (seconds idle, minutes on a loaded 2-core host)
def test_semantic_guard_accepts_a_synonym_the_catalog_does_not_know(semantic_guard):
    assert not RewriteGuard.from_texts(SEMANTIC_CATALOG).allows("ivory shades", "ivory sunglasses"), "rules alone"
    assert semantic_guard.allows("ivory shades", "ivory sunglasses")
    assert semantic_guard.allows("white quilt cover", "white duvet cover")
    assert semantic_guard.names_catalog_item("ivory sunglasses") and not semantic_guard.names_catalog_item(
        "white sunglasses"
    )


@pytest.mark.parametrize(
    ("query", "rewrite", "why"),
    [
        ("ivory shades", "ivory kettle", "an unrelated replacement"),
        ("nike running shoes", "trailmark running shoes", "an out-of-catalog brand swapped for a catalog one"),
        ("red office chair", "purple office chair", "a word the catalog knows is never replaced"),
        ("shades without case", "sunglasses with case", "a dropped negation"),
        ("shades 2 pack", "sunglasses 3 pack", "a changed number"),
        ("lilac shades", "sunglasses", "a dropped word without a replacement"),
        ("white shades", "white sunglasses", "the catalog sells no white sunglasses"),
    ],
)
@pytest.mark.slow
def test_semantic_guard_rejects_harm(semantic_guard, query, rewrite, why):
    assert not semantic_guard.allows(query, rewrite), why


@pytest.mark.slow
def test_known_words_change_only_when_the_typed_query_names_nothing_the_catalog_sells():
    guard = RewriteGuard.from_texts(SEMANTIC_CATALOG + ["white kettle"], semantic_threshold=0.3)
    relaxed = RewriteGuard.from_texts(
        SEMANTIC_CATALOG + ["white kettle"], semantic_threshold=0.3, replace_known_words=True
    )
    assert not guard.allows("white sunglasses", "ivory sunglasses"), "white is a catalog word"
    assert relaxed.allows("white sunglasses", "ivory sunglasses"), "no catalog text holds white and sunglasses"
    assert not relaxed.allows("white kettle", "ivory kettle"), "the typed query names a white kettle"
    assert not relaxed.allows("white sunglasses", "ivory sunglasses 3 pack"), "numbers never change"


def test_semantic_options_are_validated_and_saved(tmp_path):
    with pytest.raises(ValueError, match="semantic_threshold"):
        RewriteGuard(frozenset({"sofa"}), semantic_threshold=1.5)
    with pytest.raises(ValueError, match="semantic_threshold needs the catalog vocabulary"):
        RewriteGuard(semantic_threshold=0.6)
    with pytest.raises(ValueError, match="catalog_word_sets"):
        RewriteGuard(frozenset({"sofa"}), semantic_threshold=0.6)
    guard = RewriteGuard.from_texts(SEMANTIC_CATALOG, semantic_threshold=0.6, replace_known_words=True)
    loaded = RewriteGuard.load(guard.save(tmp_path / "guard.json"))
    assert loaded == guard and loaded.semantic_threshold == 0.6 and loaded.replace_known_words
