"""Canary decisions and the KServe InferenceService patches (validated against the KServe CRD schema)."""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml

from minielm.rl import canary
from minielm.rl.errors import RLInputError

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


def test_decision_promotes_only_with_enough_requests_and_no_regression():
    assert canary.decide_canary([1.0] * 20, [0.9] * 20, 20, 0.0).promote
    few = canary.decide_canary([1.0] * 5, [0.0] * 5, 20, 0.0)
    assert not few.promote and "rl.canary_min_requests=20" in few.reason
    worse = canary.decide_canary([0.5] * 30, [0.6] * 30, 20, 0.05)
    assert not worse.promote and "rl.canary_max_regression" in worse.reason
    assert canary.decide_canary([0.58] * 30, [0.6] * 30, 20, 0.05).promote
    with pytest.raises(RLInputError, match="per request"):
        canary.decide_canary([1.0], [1.0, 2.0], 1, 0.0)


def test_replay_routes_the_traffic_share_and_compares_on_the_same_requests():
    queries = [f"q{i}" for i in range(50)]
    reward = lambda qs, rs: np.asarray([1.0 if r.endswith("+") else 0.0 for r in rs])  # noqa: E731
    better = canary.replay_canary(
        queries,
        lambda qs: [q + "+" for q in qs],
        lambda qs: list(qs),
        reward,
        traffic_percent=10,
        min_requests=20,
        max_regression=0.0,
    )
    assert better.promote and better.n_requests == 20 and better.delta == 1.0
    worse = canary.replay_canary(
        queries,
        lambda qs: list(qs),
        lambda qs: [q + "+" for q in qs],
        reward,
        traffic_percent=25,
        min_requests=20,
        max_regression=0.1,
    )
    assert not worse.promote and worse.n_requests == 20


def test_decision_from_live_feedback_pairs_queries():
    frame = pd.DataFrame(
        {"model_version": ["new"] * 4 + ["old"] * 4, "query_key": list("abcd") * 2, "reward": [1, 1, 1, 1, 0, 0, 1, 0]}
    )
    decision = canary.decide_from_feedback(frame, "new", "old", min_requests=4, max_regression=0.0)
    assert decision.promote and decision.production_reward == 0.25


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
