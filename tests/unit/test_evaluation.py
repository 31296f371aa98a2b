"""Metrics on hand-computed cases, rewrite sources, and raw vs oracle on the synthetic catalog."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from minielm.data.synthetic import generate_dataset
from minielm.evaluation import (
    compare_rewriters,
    evaluate_queries,
    format_report_table,
    ndcg_at_k,
    oracle_queries,
    raw_queries,
)
from minielm.search import SearchIndex


class FixedResults:
    """A search engine that returns preset ids per query text (to hand-compute metrics)."""

    def __init__(self, results: dict[str, list[str]]):
        self.results = results

    def search(self, queries, k):
        return [self.results.get(q, [])[:k] for q in queries]


EXAMPLES = pd.DataFrame(
    {
        "query_id": ["1", "1", "1", "1", "2", "2", "3"],
        "query": ["a", "a", "a", "a", "b", "b", "c"],
        "product_id": ["p1", "p2", "p3", "p4", "p1", "p5", "p9"],
        "esci_label": ["E", "S", "E", "I", "C", "I", "E"],
    }
)


def test_hand_computed_metrics():
    index = FixedResults({"a": ["p2", "p1", "px", "p4"], "b": ["p5"], "c": []})
    report = evaluate_queries(index, EXAMPLES, {"1": "a", "2": "b", "3": "c"}, k=3)
    # Query 1: top 3 = S, E, unjudged -> 1 relevant of 2; query 2: 0 relevant (none judged relevant);
    # query 3: nothing returned.
    assert report["relevant_per_query"] == pytest.approx(1 / 3)
    assert report["recall"] == pytest.approx((0.5 + 0.0) / 2)  # query 2 has no relevant product: excluded
    assert report["zero_result_rate"] == pytest.approx(1 / 3)
    ndcg_1 = (0.1 / math.log2(2) + 1.0 / math.log2(3)) / (1.0 + 1.0 / math.log2(3) + 0.1 / math.log2(4))
    ndcg_2 = 0.0  # returned only an Irrelevant product (gain 0) while the ideal has the Complement
    assert report["ndcg"] == pytest.approx((ndcg_1 + ndcg_2 + 0.0) / 3)
    assert [d["relevant"] for d in report["per_query"]] == [1, 0, 0]
    with_substitutes = evaluate_queries(
        index, EXAMPLES, {"1": "a", "2": "b", "3": "c"}, k=3, substitute_is_relevant=True
    )
    assert with_substitutes["relevant_per_query"] == pytest.approx(2 / 3)
    assert report["n_queries"] == 3


def test_ndcg_edges():
    assert ndcg_at_k(["E", "E"], ["E", "E", "S"], 2) == pytest.approx(1.0)
    assert ndcg_at_k([None, "E"], ["E"], 2) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([], ["I"], 5) == 0.0


def test_unknown_query_ids_and_bad_k_are_errors():
    index = FixedResults({})
    with pytest.raises(ValueError, match=r"query ids without judgments.*'404'"):
        evaluate_queries(index, EXAMPLES, {"404": "x"}, k=3)
    with pytest.raises(ValueError, match="k must be"):
        evaluate_queries(index, EXAMPLES, {"1": "a"}, k=0)
    with pytest.raises(ValueError, match="canonical_query"):
        oracle_queries(EXAMPLES)


class UpperRewriter:
    version = "t1"

    def rewrite(self, queries, num_return=1, do_sample=False):
        return [[q.upper()] for q in queries]


def test_compare_accepts_mappings_callables_and_rewriters():
    index = FixedResults({"a": ["p1", "p3"], "A": ["p4"], "b!": ["p1"]})
    report = compare_rewriters(
        index,
        EXAMPLES,
        {
            "raw": raw_queries(EXAMPLES),
            "upper": UpperRewriter(),
            "bang": lambda queries: [q + "!" for q in queries],
        },
        k=2,
    )
    assert report["systems"]["raw"]["relevant_per_query"] == pytest.approx(2 / 3)
    assert report["systems"]["upper"]["relevant_per_query"] == 0
    assert report["gain_over_raw"]["upper"]["relative"] == pytest.approx(-1.0)
    assert set(report["per_query"]) == {"raw", "upper", "bang"}
    table = format_report_table(report)
    assert "upper" in table and "-100.0%" in table
    with pytest.raises(ValueError, match="rewrites missing"):
        compare_rewriters(index, EXAMPLES, {"raw": {"1": "a"}}, k=2)
    with pytest.raises(ValueError, match="returned 1 rewrites for 3"):
        compare_rewriters(index, EXAMPLES, {"bad": lambda queries: ["x"]}, k=2)


def test_oracle_rewrites_clearly_beat_raw_queries_on_the_synthetic_catalog():
    data = generate_dataset(n_products=2000, n_queries=500, seed=3)
    index = SearchIndex.build(data.products)
    examples = data.examples[data.examples["noise"] != "out_of_catalog"]  # nothing to find for those
    report = compare_rewriters(
        index, examples, {"raw": raw_queries(examples), "oracle": oracle_queries(examples)}, k=10
    )
    raw, oracle = report["systems"]["raw"], report["systems"]["oracle"]
    assert oracle["relevant_per_query"] > 1.25 * raw["relevant_per_query"]
    assert oracle["ndcg"] > raw["ndcg"] + 0.15
    assert oracle["zero_result_rate"] == 0.0 < raw["zero_result_rate"]
