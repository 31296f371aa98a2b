"""Reward terms on a real BM25 index over a tiny catalog, and the feedback-window helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from minielm.config import RLConfig
from minielm.rl.errors import RLInputError
from minielm.rl.feedback import observed_rewards, parse_window_key, stream_of
from minielm.rl.rewards import RewardModel, clean_rewrite, degenerate_penalty
from minielm.rl.similarity import NgramOverlapSimilarity
from minielm.search import SearchIndex

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["p1", "p2", "p3", "p4"],
        "product_locale": "us",
        "product_title": ["red running shoes", "blue running shoes", "red wool hat", "usb c cable"],
        "product_description": "",
        "product_bullet_point": "",
        "product_brand": "",
        "product_color": "",
    }
)


class KeywordJudge:
    version = "test"

    def score(self, queries, texts):
        return np.asarray([1.0 if q.split()[0][:3] in t else 0.0 for q, t in zip(queries, texts)])

    def predict_proba(self, queries, texts):
        raise NotImplementedError


@pytest.fixture(scope="module")
def model():
    return RewardModel(
        config=RLConfig(judge_top_k=2, max_rewrite_words=4, intent_similarity_floor=0.2),
        index=SearchIndex.build(PRODUCTS),
        product_texts=dict(zip(PRODUCTS.product_id, PRODUCTS.product_title)),
        similarity=NgramOverlapSimilarity(),
        judge=KeywordJudge(),
        relevant={"q1": {"p1"}},
        observed={},
        top_k=2,
    )


def test_retrieval_gain_counts_labelled_relevant_products_vs_raw(model):
    gains = model.retrieval_gain(["redd sneakrs", "anything"], ["red running shoes", "x"], ["q1", None])
    assert gains[0] == pytest.approx(0.5) and gains[1] == 0.0


def test_judge_scores_what_the_rewrite_retrieves_against_the_original_query(model):
    scores = model.judge_score(["red shoes", "red shoes"], ["red running", "qqqq"])
    assert scores[0] > 0 and scores[1] == 0.0  # no results judge as 0


def test_penalties_for_drift_and_degenerate_outputs(model):
    drift = model.intent_drift(["wireles headphones", "red shoe"], ["wireless headphones", "garden hose"])
    assert drift[0] == 0.0 and drift[1] == 1.0
    assert degenerate_penalty("", 4) == 1.0
    assert degenerate_penalty("red red red shoe", 4) == 1.0
    assert degenerate_penalty("a b c d e", 4) == 1.0
    assert degenerate_penalty("red shoe", 4) == 0.0
    assert clean_rewrite("  red shoe \nmore text") == "red shoe"


def test_total_weights_gains_up_and_penalties_down(model):
    good = model.total(["redd sneakrs"], ["red running shoes"], ["q1"])[0]
    bad = model.total(["redd sneakrs"], ["hat hat hat hat hat"], ["q1"])[0]
    assert good > 0 > bad
    assert model.signed_weights() == {
        "feedback": 1.0,
        "judge": 1.0,
        "retrieval_gain": 1.0,
        "intent_drift": -1.0,
        "degenerate": -1.0,
    }
    assert model.retrieval_gain(["redd sneakrs"], ["red running shoes"], ["q1"]).tolist() == [0.5]


def test_observed_feedback_reward_matches_normalised_pairs():
    frame = pd.DataFrame(
        {
            "query": ["Red Shoe", "red  shoe", "red shoe", "hat"],
            "rewrite": ["red shoes", "RED SHOES", "red sock", "hat"],
            "reward": [1.0, 0.0, -3.0, 50.0],
        }
    )
    table = observed_rewards(frame)
    assert sorted(table.values()) == [-3.0, 0.5, 50.0]
    model = RewardModel(
        config=RLConfig(), index=None, product_texts={}, similarity=NgramOverlapSimilarity(), observed=table
    )
    values = model.feedback(
        ["red shoe", "red shoe", "red shoe", "hat", "never served"], ["red shoes", "red sock", "blue", "hat", "x"]
    )
    scale = RLConfig().feedback_reward_scale
    assert values.tolist() == pytest.approx(
        [np.tanh(0.5 / scale), np.tanh(-3.0 / scale), np.tanh(-1.25 / scale), np.tanh(50 / scale), 0.0]
    )  # unserved rewrite: the query's mean; every value bounded to (-1, 1)
    assert np.all(np.abs(values) < 1)


def test_window_keys_parse_or_fail_clearly():
    ref = parse_window_key("feedback/windows/topic=minielm.rewrites/partition=1/offsets=10-19.parquet")
    assert (stream_of(ref), ref.first_offset, ref.last_offset) == ("minielm.rewrites/1", 10, 19)
    with pytest.raises(RLInputError, match="does not follow"):
        parse_window_key("feedback/windows/other.parquet")
    with pytest.raises(RLInputError, match="after last offset"):
        parse_window_key("feedback/windows/topic=t/partition=0/offsets=9-3.parquet")
