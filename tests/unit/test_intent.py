"""Harm and intent: which rewrites lose what a shopper asked for."""

from __future__ import annotations

import pytest

from minielm.intent import harm_summary, intent_check, is_model_number, is_number_with_unit


@pytest.mark.parametrize(
    ("query", "rewrite", "kinds"),
    [
        ("toddler water bottle without straw", "water bottle with straw", {"content_word", "negation"}),
        ("table top bandsaw for metal", "table top bandsaw", {"content_word"}),
        ("outdoor patio sofa", "wireless headphones", {"content_word"}),
        ("velora k618 black wool shorts", "velora black wool shorts", {"model_number"}),
        ("cookwell kettle 2 pack", "kettle 2 pack", {"brand"}),
        ("frying pan 10 inch", "frying pan inch", {"number"}),
        ("water bottle bpa free", "water bottle bpa", {"negation"}),
    ],
)
def test_rewrites_that_lose_intent_are_harm(query, rewrite, kinds):
    check = intent_check(query, rewrite)
    assert check.changed and check.harmed
    assert {kind for _, kind in check.lost} == kinds


@pytest.mark.parametrize(
    ("query", "rewrite"),
    [
        ("wireles hedphones blk", "wireless headphones black"),  # typos and an abbreviation corrected
        ("coffee tabel", "coffee table"),
        ("best blk instapot 6qt", "black pressure cooker 6 quart"),  # filler, lexicon synonym, unit variant
        ("back pack", "backpack"),
        ("foodprocessor", "food processor"),
        ("sm-g991 case", "smg991 case"),
        ("cheap sofa on sale", "sofa"),
        ("nightstand", "bedside table"),
        ("running shoes", "running shoe"),
        ("water bottle", "water bottle"),
    ],
)
def test_rewrites_that_keep_intent_are_not_harm(query, rewrite):
    check = intent_check(query, rewrite)
    assert not check.harmed, check.reasons


def test_an_added_negation_changes_intent():
    check = intent_check("water bottle with straw", "water bottle without straw")
    assert check.harmed and check.added_negations == ("without",)


def test_quantities_are_not_model_numbers():
    assert is_number_with_unit("6qt") and is_number_with_unit("1.5l") and is_number_with_unit("size10")
    assert is_model_number("x200") and is_model_number("sm-g991") and is_model_number("500d")
    assert not is_model_number("6qt") and not is_model_number("20")


def test_harm_summary_rates_classes_and_examples():
    summary = harm_summary(
        ["sofa", "guitar strings", "coffee tabel", "no lid pot"],
        ["sofa", "guitar straps", "coffee table", "lid pot"],
        classes=["clean", "out_of_catalog", "misspelling", "clean"],
    )
    assert summary["harm_rate"] == 0.5 and summary["safe_share"] == 0.5
    assert summary["changed_share"] == 0.75
    assert summary["by_class"]["clean"] == {"n_queries": 2, "harm_rate": 0.5, "changed_share": 0.5}
    assert summary["by_kind"]["negation"] == 1
    assert [e["query"] for e in summary["harmed_examples"]] == ["guitar strings", "no lid pot"]
    with pytest.raises(ValueError, match="2 queries but 1 rewrites"):
        harm_summary(["a", "b"], ["a"])


def test_a_reference_rewrite_excuses_what_the_checker_cannot_match():
    garbled = "wht nielon tree without bowl"
    assert intent_check(garbled, "white nylon tree without bowl").harmed  # "nielon" is 2 edits from "nylon"
    assert not intent_check(
        garbled, "white nylon tree without bowl", reference="white nylon cat tree without bowl"
    ).harmed
    dropped = intent_check(garbled, "white nylon tree", reference="white nylon cat tree without bowl")
    assert dropped.harmed and ("without", "negation") in dropped.lost
    assert not intent_check(
        "stapler withoutstaples", "stapler without staples"
    ).harmed  # a split, not an added negation
