"""Canary decisions and the KServe InferenceService patches (validated against the KServe CRD schema)."""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml

from minielm.config import load_settings
from minielm.rl import canary
from minielm.rl.errors import RLInputError
from minielm.rl.shopper import ShopperScorer, independent_shopper

CRD = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "schemas"
    / "kserve"
    / "serving.kserve.io_inferenceservices.yaml"
)


def isvc() -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "student-rewriter", "namespace": "minielm"},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "minielm:1",
                        "command": ["minielm", "serve"],
                        "env": [
                            {"name": "MINIELM_CONFIG", "value": "/etc/minielm/settings.yaml"},
                            {"name": canary.STAGE_ENV, "value": "production"},
                        ],
                    }
                ],
            }
        },
    }


@functools.lru_cache(maxsize=1)
def isvc_schema() -> dict:
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["predictor"]


def validate(obj: dict) -> None:
    """The patched predictor against the CRD's predictor schema (the whole CRD is slow to validate)."""
    if not CRD.is_file():
        pytest.skip(f"{CRD} is not present")
    jsonschema.Draft7Validator(isvc_schema()).validate(obj["spec"]["predictor"])


def stage_of(obj: dict) -> str:
    env = obj["spec"]["predictor"]["containers"][0]["env"]
    return [e["value"] for e in env if e["name"] == canary.STAGE_ENV][-1]


def test_decision_promotes_only_on_a_significant_win_with_enough_requests():
    rng = np.random.default_rng(0)
    production = rng.uniform(0, 1, 40)
    won = canary.decide_canary((production + 0.2).tolist(), production.tolist(), 20, 0.05)
    assert won.promote and won.verdict == canary.PROMOTE and won.p_value < 0.05
    few = canary.decide_canary([1.0] * 5, [0.0] * 5, 20, 0.05)
    assert not few.promote and few.verdict == canary.INCONCLUSIVE and "rl.canary_min_requests=20" in few.reason
    noisy = production + np.tile([0.3, -0.29], 20)  # a tiny mean gain buried in noise
    unsure = canary.decide_canary(noisy.tolist(), production.tolist(), 20, 0.05)
    assert not unsure.promote and unsure.verdict == canary.WORSE and "production kept" in unsure.reason
    worse = canary.decide_canary((production - 0.1).tolist(), production.tolist(), 20, 0.05)
    assert not worse.promote and worse.p_value > 0.5
    with pytest.raises(RLInputError, match="per request"):
        canary.decide_canary([1.0], [1.0, 2.0], 1, 0.05)


def test_a_candidate_identical_to_production_is_no_change():
    rewards = np.linspace(0, 1, 30).tolist()
    same = canary.decide_canary(rewards, rewards, 20, 0.05)
    assert not same.promote and same.verdict == canary.NO_CHANGE
    assert "no change" in same.reason and "production kept" in same.reason


def test_one_sided_p_value_matches_scipy():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.1, 1, 50), rng.normal(0, 1, 50)
    assert canary.one_sided_paired_p(a - b) == pytest.approx(ttest_rel(a, b, alternative="greater").pvalue)


class MarkedProductJudge:
    """Scripted shopper: a product id ending in ``+`` is what every shopper wants."""

    def score_shown(self, queries, product_ids):
        return np.asarray([1.0 if p.endswith("+") else 0.0 for p in product_ids])


def scripted_shopper() -> ShopperScorer:
    """The rewrite's text is the one product it retrieves."""
    return ShopperScorer(MarkedProductJudge(), lambda texts, k: [[t] for t in texts], 1, 1.0, "shopper:scripted")


def test_replay_routes_distinct_queries_and_compares_on_the_same_requests():
    queries = [f"q{i}" for i in range(50)]
    shopper = scripted_shopper()
    better = canary.replay_canary(
        queries,
        lambda qs: [q + "+" for q in qs],
        lambda qs: list(qs),
        shopper,
        traffic_percent=10,
        min_requests=20,
        alpha=0.05,
    )
    assert better.promote and better.n_requests == 20 and better.delta == 1.0
    assert better.judge == "shopper:scripted" and "scored by shopper:scripted" in better.reason
    worse = canary.replay_canary(
        queries,
        lambda qs: list(qs),
        lambda qs: [q + "+" for q in qs],
        shopper,
        traffic_percent=60,
        min_requests=20,
        alpha=0.05,
    )
    assert not worse.promote and worse.n_requests == 30
    repeated = canary.replay_canary(
        queries[:5] * 10, lambda qs: [q + "+" for q in qs], lambda qs: list(qs), shopper, 10, 20, 0.05
    )
    assert repeated.verdict == canary.INCONCLUSIVE and repeated.n_requests == 5


@pytest.fixture(scope="module")
def catalog():
    from minielm.data.synthetic import generate_dataset
    from minielm.search import SearchIndex

    data = generate_dataset(n_products=300, n_queries=80, seed=3)
    return data, SearchIndex.build(data.products)


def test_the_independent_shopper_scores_the_replay_and_prefers_rewrites_that_find_the_intended_products(catalog):
    """Real catalog attributes and BM25: a rewrite that names what the shopper wants (the synthetic canonical
    query) beats one that keeps only the query's first word, judged against the typed query."""
    data, index = catalog
    settings = load_settings(environ={}, use_services_state=False)
    shopper = independent_shopper(settings, data, index.search)
    assert shopper.name == "shopper:attributes"
    pairs = data.examples.drop_duplicates("query")
    canonical = dict(zip(pairs["query"], pairs["canonical_query"]))
    queries = sorted(canonical)
    intended, first_word = [canonical[q] for q in queries], [q.split()[0] for q in queries]
    assert shopper(queries, intended).mean() > shopper(queries, first_word).mean() + 0.1
    assert ((0 <= shopper(queries, intended)) & (shopper(queries, intended) <= 1)).all()

    def to_canonical(qs):
        return [canonical[q] for q in qs]

    def to_first_word(qs):
        return [q.split()[0] for q in qs]

    won = canary.replay_canary(queries, to_canonical, to_first_word, shopper, 50, 20, 0.05)
    assert won.promote and won.judge == "shopper:attributes", won
    lost = canary.replay_canary(queries, to_first_word, to_canonical, shopper, 50, 20, 0.05)
    assert lost.verdict == canary.WORSE and not lost.promote
    same = canary.replay_canary(queries, to_canonical, to_canonical, shopper, 50, 20, 0.05)
    assert same.verdict == canary.NO_CHANGE


def test_a_relevance_teacher_shopper_without_a_registered_teacher_fails_naming_it(catalog):
    data, index = catalog
    settings = load_settings(
        overrides=["feedback.shopper_judge=relevance_teacher"], environ={}, use_services_state=False
    )
    with pytest.raises(RLInputError, match="models.teacher_relevance"):
        independent_shopper(settings, data, index.search)
    products = data.products.drop(columns=["product_color"])
    with pytest.raises(RLInputError, match="product_color"):
        independent_shopper(
            load_settings(environ={}, use_services_state=False),
            type(data)(examples=data.examples, products=products),
            index.search,
        )


def test_decision_from_live_feedback_pairs_queries():
    frame = pd.DataFrame(
        {
            "model_version": ["new"] * 6 + ["old"] * 6,
            "query_key": list("abcdef") * 2,
            "reward": [1, 1, 1, 1, 0.9, 1, 0, 0, 1, 0, 0, 0.1],
        }
    )
    decision = canary.decide_from_feedback(frame, "new", "old", min_requests=4, alpha=0.05)
    assert decision.promote and decision.production_reward == pytest.approx(1.1 / 6)
    assert not canary.decide_from_feedback(frame, "new", "old", min_requests=7, alpha=0.05).promote


def test_canary_patch_splits_traffic_and_serves_the_candidate_stage():
    patch = canary.canary_patch(isvc(), "v2", 10)
    patched = canary.apply_merge_patch(isvc(), patch)
    validate(patched)
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert stage_of(patched) == "candidate"
    assert patched["spec"]["predictor"]["containers"][0]["env"][0]["name"] == "MINIELM_CONFIG"
    assert patched["metadata"]["annotations"]["minielm.io/model-version-candidate"] == "v2"
    assert patched["spec"]["predictor"]["minReplicas"] == 1
    with pytest.raises(RLInputError, match="canary_traffic_percent"):
        canary.canary_patch(isvc(), "v2", 100)


def test_promotion_patch_drops_the_split_and_rollback_sends_traffic_back():
    in_canary = canary.apply_merge_patch(isvc(), canary.canary_patch(isvc(), "v2", 20))
    promoted = canary.apply_merge_patch(in_canary, canary.promotion_patch(in_canary, "v2"))
    validate(promoted)
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert stage_of(promoted) == "production"
    assert promoted["metadata"]["annotations"] == {"minielm.io/model-version": "v2"}
    rolled_back = canary.apply_merge_patch(in_canary, canary.rollback_patch())
    validate(rolled_back)
    assert rolled_back["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_patch_of_a_service_without_the_predictor_container_fails_clearly():
    broken = isvc()
    broken["spec"]["predictor"]["containers"][0]["name"] = "other"
    with pytest.raises(RLInputError, match="kserve-container"):
        canary.canary_patch(broken, "v2", 10)
