"""The simulated shopper's independent judge (catalog attributes of the intended products) and the split
of served traffic away from the evaluation queries."""

from __future__ import annotations

import pytest

from minielm.config import FeedbackConfig
from minielm.data.synthetic import generate_dataset
from minielm.feedback.events import ServedRewrite
from minielm.feedback.simulator import AttributeShopperJudge, ShopperSimulator, served_queries


@pytest.fixture(scope="module")
def data():
    return generate_dataset(n_products=300, n_queries=60, seed=5)


def test_attribute_judge_scores_intended_products_high_and_other_types_zero(data):
    judge = AttributeShopperJudge(data.products, data.examples)
    query = data.examples["query"].iloc[0]
    labels = data.examples[data.examples["query"] == query].set_index("product_id")["esci_label"]
    scores = dict(zip(labels.index, judge.score_shown([query] * len(labels), list(labels.index))))
    exact = [scores[p] for p, label in labels.items() if label == "E"]
    irrelevant = [scores[p] for p, label in labels.items() if label == "I"]
    assert exact and min(exact) == 1.0
    assert irrelevant and max(irrelevant) == 0.0
    assert judge.score_shown(["a query nobody generated"], [labels.index[0]]).tolist() == [0.0]


def test_shoppers_judged_by_attributes_never_get_the_oracle_rewrite(data):
    judge = AttributeShopperJudge(data.products, data.examples)
    sim = ShopperSimulator(judge, {}, FeedbackConfig(reformulation_prob=1.0), seed=0)
    query = data.examples["query"].iloc[0]
    irrelevant = data.examples[(data.examples["query"] == query) & (data.examples["esci_label"] == "I")]
    served = ServedRewrite(
        request_id="r1",
        query=query,
        rewrite=query,
        model_name="m",
        model_version="1",
        product_ids=irrelevant["product_id"].tolist(),
        ts=1.0,
    )
    outcome = sim.react_batch([served])[0]
    assert not outcome.satisfied and max(outcome.scores) == 0.0
    reformulation = [e for e in outcome.events if e.event_type == "reformulation"]
    assert reformulation and reformulation[0].reformulated_query is None


def test_served_traffic_holds_no_evaluation_query(data):
    queries = served_queries(data.examples)
    held_out = set(data.examples.loc[data.examples["split"].isin(["validation", "test"]), "query"])
    assert queries and not set(queries) & held_out
    with pytest.raises(ValueError, match="every query is in an evaluation split"):
        served_queries(data.examples[data.examples["split"] == "test"])
