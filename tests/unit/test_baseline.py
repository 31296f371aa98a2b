"""The phrase-table + spelling baseline: mined from train pairs, safe on clean queries, saved and loaded."""

from __future__ import annotations

import pandas as pd
import pytest

from minielm.baseline import PhraseTableRewriter, mine_phrase_table
from minielm.data.synthetic import generate_dataset
from minielm.errors import InputError
from minielm.evaluation import compare_rewriters, oracle_queries, raw_queries
from minielm.intent import harm_rate
from minielm.models.interfaces import QueryRewriter
from minielm.search import SearchIndex

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["1", "2", "3"],
        "product_title": ["Black Wireless Headphones", "Pressure Cooker 6 Quart", "Food Processor 12 Cup"],
    }
)


def test_phrase_table_templates_numbers_and_skips_ambiguous_spans():
    table = mine_phrase_table(
        ["instapot 6qt", "blk instapot", "steel pot", "stainless steel pot", "steel pan"],
        ["pressure cooker 6 quart", "black pressure cooker", "stainless steel pot", "stainless steel pot", "steel pan"],
    )
    assert table["instapot"] == "pressure cooker"
    assert table["#qt"] == "# quart"
    assert "steel" not in table  # edited once in three occurrences


def test_rewrites_with_the_table_then_spelling_against_the_catalog():
    examples = pd.DataFrame(
        {
            "query_id": ["a", "b"],
            "query": ["instapot 6qt", "cans"],
            "canonical_query": ["pressure cooker 6 quart", "headphones"],
        }
    )
    rewriter = PhraseTableRewriter.fit(PRODUCTS, examples)
    assert isinstance(rewriter, QueryRewriter)
    assert rewriter(["instapot 8qt", "wireles hedphones blak", "foodprocessor", "head phones"]) == [
        "pressure cooker 8 quart",
        "wireless headphones black",
        "food processor",
        "headphones",
    ]
    assert rewriter(["pressure cooker 6 quart", "guitar strings", "x200"]) == [
        "pressure cooker 6 quart",
        "guitar strings",
        "x200",
    ]
    assert rewriter.rewrite(["instapot"], num_return=2) == [["pressure cooker", "pressure cooker"]]


def test_spelling_only_without_canonical_queries(tmp_path):
    rewriter = PhraseTableRewriter.fit(PRODUCTS, pd.DataFrame({"query_id": ["a"], "query": ["instapot"]}))
    assert rewriter.phrases == {}
    assert rewriter(["instapot", "presure coker"]) == ["instapot", "pressure cooker"]
    loaded = PhraseTableRewriter.load(rewriter.save(tmp_path / "baseline"))
    assert loaded(["presure coker"]) == ["pressure cooker"] and loaded.version == rewriter.version
    with pytest.raises(InputError, match="no phrase-table baseline"):
        PhraseTableRewriter.load(tmp_path / "missing")


def test_beats_raw_on_unseen_noise_and_leaves_clean_queries_alone():
    data = generate_dataset(n_products=1500, n_queries=1500, seed=5)
    rewriter = PhraseTableRewriter.fit(data.products, data.examples)
    test = data.examples[data.examples["split"] == "test"]
    unseen = test[test["noise_novelty"] == "unseen"]
    index = SearchIndex.build(data.products)
    raw = raw_queries(unseen)
    report = compare_rewriters(
        index, unseen, {"raw": raw, "baseline": rewriter, "oracle": oracle_queries(unseen)}, k=10
    )
    systems = report["systems"]
    assert systems["baseline"]["relevant_per_query"] > 1.1 * systems["raw"]["relevant_per_query"]
    queries = test.drop_duplicates("query_id")
    clean = queries[queries["noise"].isin(["", "out_of_catalog"])]["query"].tolist()
    assert harm_rate(clean, rewriter(clean)) <= 0.02


def test_a_saved_baseline_is_served_like_any_rewriter(tmp_path):
    from serving.loading import load_model_dir

    saved = PhraseTableRewriter.fit(PRODUCTS).save(tmp_path / "baseline")
    served = load_model_dir(saved, "rewriter")
    assert isinstance(served, PhraseTableRewriter) and served(["presure coker"]) == ["pressure cooker"]
