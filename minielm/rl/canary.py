"""Canary rollout of an RL candidate: the promote-or-roll-back decision and the KServe patches.

The decision compares the candidate with production on the SAME requests routed to the canary
(a paired comparison: on replayed traffic production's answer to those requests is known; on a
cluster it is the production arm's reward on the same queries in the feedback windows). It promotes
only with at least ``canary_min_requests`` canary requests and a mean reward no lower than
production's minus ``canary_max_regression``.

On a cluster the rewriter's InferenceService (a custom ``minielm serve`` predictor that loads a
registry stage) is patched with JSON merge patches: the canary patch points a new revision at the
``candidate`` stage and sets ``canaryTrafficPercent``; promotion drops ``canaryTrafficPercent`` and
serves the ``production`` stage (which the registry now points at the candidate); rollback sets
``canaryTrafficPercent: 0``, KServe's way to send all traffic back to the last good revision.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from minielm.logs import get_logger
from minielm.rl.errors import RLInputError

log = get_logger(__name__)

STAGE_ENV = "MINIELM_SERVING__MODEL_STAGE"
PREDICTOR_CONTAINER = "kserve-container"
VERSION_ANNOTATION = "minielm.io/model-version"


@dataclass
class CanaryDecision:
    promote: bool
    reason: str
    n_requests: int
    candidate_reward: float
    production_reward: float

    @property
    def delta(self) -> float:
        return self.candidate_reward - self.production_reward

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta}


def decide_canary(
    candidate_rewards: Sequence[float], production_rewards: Sequence[float], min_requests: int, max_regression: float
) -> CanaryDecision:
    """Promote when enough paired canary requests show no regression beyond the tolerance."""
    if len(candidate_rewards) != len(production_rewards):
        raise RLInputError(
            f"canary: {len(candidate_rewards)} candidate rewards but {len(production_rewards)} "
            "production rewards; the comparison is per request"
        )
    n = len(candidate_rewards)
    cand = float(np.mean(candidate_rewards)) if n else float("nan")
    prod = float(np.mean(production_rewards)) if n else float("nan")
    if n < min_requests:
        return CanaryDecision(
            False, f"only {n} canary requests, fewer than rl.canary_min_requests={min_requests}", n, cand, prod
        )
    if cand < prod - max_regression:
        return CanaryDecision(
            False,
            f"candidate reward {cand:.4f} is below production {prod:.4f} by more than "
            f"rl.canary_max_regression={max_regression}",
            n,
            cand,
            prod,
        )
    return CanaryDecision(
        True, f"candidate reward {cand:.4f} vs production {prod:.4f} over {n} requests", n, cand, prod
    )


def canary_slice(n_requests: int, traffic_percent: int, seed: int) -> np.ndarray:
    """Indices of the replayed requests the canary serves: ``traffic_percent`` of them, at random."""
    count = math.ceil(n_requests * traffic_percent / 100)
    return np.sort(np.random.default_rng(seed).choice(n_requests, size=count, replace=False))


def replay_canary(
    queries: Sequence[str],
    candidate: Callable[[list[str]], list[str]],
    production: Callable[[list[str]], list[str]],
    reward: Callable[[list[str], list[str]], np.ndarray],
    traffic_percent: int,
    min_requests: int,
    max_regression: float,
    seed: int = 0,
) -> CanaryDecision:
    """Replay traffic through a canary split and decide. The replay is sized so the canary sees at least
    ``min_requests`` requests (queries repeat when the log is shorter)."""
    if not queries:
        raise RLInputError("canary replay needs queries; the replay set is empty")
    n_total = max(len(queries), math.ceil(min_requests * 100 / traffic_percent))
    traffic = [queries[i % len(queries)] for i in range(n_total)]
    routed = [traffic[i] for i in canary_slice(n_total, traffic_percent, seed)]
    distinct = sorted(set(routed))
    cand_rewrites = dict(zip(distinct, candidate(distinct)))
    prod_rewrites = dict(zip(distinct, production(distinct)))
    cand = reward(routed, [cand_rewrites[q] for q in routed])
    prod = reward(routed, [prod_rewrites[q] for q in routed])
    decision = decide_canary(cand.tolist(), prod.tolist(), min_requests, max_regression)
    log.info("canary replay decided", requests=n_total, canary_requests=len(routed), **decision.as_dict())
    return decision


def decide_from_feedback(
    feedback, candidate_version: str, production_version: str, min_requests: int, max_regression: float
) -> CanaryDecision:
    """Decide from live feedback windows: the candidate's requests against production's mean reward on
    the same queries (queries production did not serve in the window are left out)."""
    cand = feedback[feedback["model_version"] == candidate_version]
    prod_mean = feedback[feedback["model_version"] == production_version].groupby("query_key")["reward"].mean()
    paired = cand[cand["query_key"].isin(prod_mean.index)]
    return decide_canary(
        paired["reward"].astype(float).tolist(),
        prod_mean.loc[paired["query_key"]].astype(float).tolist(),
        min_requests,
        max_regression,
    )


# -- KServe InferenceService patches ---------------------------------------------------------------


def _predictor_container(isvc: dict) -> dict:
    for container in isvc.get("spec", {}).get("predictor", {}).get("containers", []):
        if container.get("name") == PREDICTOR_CONTAINER:
            return container
    raise RLInputError(
        f"InferenceService {isvc.get('metadata', {}).get('name')!r} has no predictor container "
        f"named {PREDICTOR_CONTAINER!r} (spec.predictor.containers)"
    )


def _containers_serving(isvc: dict, stage: str) -> list[dict]:
    """The predictor's containers with the serving stage set (merge patches replace lists whole)."""
    containers = copy.deepcopy(isvc["spec"]["predictor"]["containers"])
    _predictor_container(isvc)
    for container in containers:
        if container.get("name") == PREDICTOR_CONTAINER:
            env = [e for e in container.get("env", []) if e.get("name") != STAGE_ENV]
            container["env"] = env + [{"name": STAGE_ENV, "value": stage}]
    return containers


def canary_patch(isvc: dict, version: str, traffic_percent: int) -> dict:
    """Merge patch: a new revision serving the candidate stage takes ``traffic_percent`` of the traffic."""
    if not 1 <= traffic_percent <= 99:
        raise RLInputError(f"rl.canary_traffic_percent: expected 1-99, got {traffic_percent}")
    return {
        "metadata": {"annotations": {f"{VERSION_ANNOTATION}-candidate": version}},
        "spec": {
            "predictor": {"canaryTrafficPercent": traffic_percent, "containers": _containers_serving(isvc, "candidate")}
        },
    }


def promotion_patch(isvc: dict, version: str) -> dict:
    """Merge patch: drop the canary split and serve the production stage (now the promoted version)."""
    return {
        "metadata": {"annotations": {VERSION_ANNOTATION: version, f"{VERSION_ANNOTATION}-candidate": None}},
        "spec": {"predictor": {"canaryTrafficPercent": None, "containers": _containers_serving(isvc, "production")}},
    }


def rollback_patch() -> dict:
    """Merge patch: all traffic back to the last revision that served at 100% (KServe rollback)."""
    return {"spec": {"predictor": {"canaryTrafficPercent": 0}}}


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server does with ``application/merge-patch+json``)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def patch_inference_service(name: str, namespace: str, patch: dict, api=None) -> dict:
    """Send a merge patch to the cluster (in-cluster credentials of the pipeline's service account)."""
    from kubernetes import client, config

    if api is None:
        config.load_incluster_config()
        api = client.CustomObjectsApi()
    return api.patch_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name, patch
    )


# -- the live canary on a cluster --------------------------------------------------------------------

ISVC_API = ("serving.kserve.io", "v1beta1")


def kube_api():
    from kubernetes import client, config

    config.load_incluster_config()
    return client.CustomObjectsApi()


def live_canary(
    settings,
    store,
    candidate_version: str,
    production_version: str,
    api=None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> CanaryDecision:
    """Patch the InferenceService into a canary, wait for live feedback windows that carry the candidate's
    requests, decide, then send the promotion or rollback patch. The registry is the caller's job."""
    import time

    from minielm.feedback.windows import list_windows, read_windows

    rl = settings.rl
    api = api or kube_api()
    sleep = sleep or time.sleep
    clock = clock or time.time
    group, version = ISVC_API
    isvc = api.get_namespaced_custom_object(group, version, rl.namespace, "inferenceservices", rl.isvc_name)
    api.patch_namespaced_custom_object(
        group,
        version,
        rl.namespace,
        "inferenceservices",
        rl.isvc_name,
        canary_patch(isvc, candidate_version, rl.canary_traffic_percent),
    )
    started = clock()
    log.info("canary started", isvc=rl.isvc_name, version=candidate_version, percent=rl.canary_traffic_percent)
    while True:
        keys = list_windows(store, since=started, prefix=settings.feedback.windows_prefix)
        frame = read_windows(store, keys)
        decision = decide_from_feedback(
            frame, candidate_version, production_version, rl.canary_min_requests, rl.canary_max_regression
        )
        if decision.n_requests >= rl.canary_min_requests or clock() - started >= rl.canary_wait_s:
            break
        sleep(rl.canary_poll_s)
    patch = promotion_patch(isvc, candidate_version) if decision.promote else rollback_patch()
    api.patch_namespaced_custom_object(group, version, rl.namespace, "inferenceservices", rl.isvc_name, patch)
    log.info("canary decided", **decision.as_dict())
    return decision
