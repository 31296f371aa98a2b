"""The cluster canary against a stand-in Kubernetes API (no API server runs here) and real S3 windows:
patch into a canary, wait for live windows, then promote or roll back."""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest

from minielm.rl import canary
from minielm.rl.feedback import WINDOW_COLUMNS
from minielm.storage import ObjectStore

pytestmark = pytest.mark.integration

ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "student-rewriter", "namespace": "minielm"},
    "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "x", "env": []}]}},
}


class RecordingApi:
    """Records the patches the canary sends (the Kubernetes API is what it stands in for)."""

    def __init__(self):
        self.patches = []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural, name) == (
            "serving.kserve.io",
            "v1beta1",
            "inferenceservices",
            "student-rewriter",
        )
        return ISVC

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.patches.append(body)


def traffic(store, prefix, first, candidate_reward, n=5):
    rows = []
    for i in range(n):
        for model_version, reward in (("v-new", candidate_reward), ("v-old", 0.5)):
            rows.append(
                {
                    "request_id": f"{model_version}-{first + i}",
                    "query": f"q{i}",
                    "query_key": f"k{i}",
                    "rewrite": "r",
                    "model_name": "student-rewriter",
                    "model_version": model_version,
                    "ts": 1.0,
                    "n_results": 1,
                    "impressions": 1,
                    "clicks": 0,
                    "add_to_carts": 0,
                    "purchases": 0,
                    "reformulated": False,
                    "reward": reward,
                    "feedback_events": 1,
                }
            )
    key = f"{prefix}/topic=minielm.rewrites/partition=0/offsets={first}-{first + len(rows) - 1}.parquet"
    store.put_parquet(key, pd.DataFrame(rows, columns=list(WINDOW_COLUMNS)))


@pytest.mark.parametrize("candidate_reward,promoted", [(0.6, True), (0.1, False)])
def test_live_canary_waits_for_requests_then_promotes_or_rolls_back(embedded_services, candidate_reward, promoted):
    settings = embedded_services.model_copy(
        update={
            "s3": embedded_services.s3.model_copy(update={"bucket": f"canary-{uuid.uuid4().hex[:8]}"}),
            "rl": embedded_services.rl.model_copy(update={"canary_min_requests": 8, "canary_traffic_percent": 10}),
        }
    )
    store = ObjectStore(settings.s3)
    store.ensure_bucket()
    prefix = settings.feedback.windows_prefix
    api, polls = RecordingApi(), []
    started = time.time()

    def live_traffic_arrives(_seconds):
        polls.append(1)
        traffic(store, prefix, 100 * len(polls), candidate_reward)

    decision = canary.live_canary(
        settings, store, "v-new", "v-old", api=api, sleep=live_traffic_arrives, clock=lambda: started - 2
    )
    assert len(polls) == 2  # 0 live requests, then 5, then 10 >= 8
    assert decision.n_requests == 10 and decision.promote is promoted
    assert api.patches[0]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    final = api.patches[1]["spec"]["predictor"]
    assert (final["canaryTrafficPercent"] is None) if promoted else (final == {"canaryTrafficPercent": 0})
