"""Canary rollout of an RL candidate: the promote-or-roll-back decision and the KServe patches.

The decision compares the candidate with production on the SAME requests routed to the canary
(a paired comparison: on replayed traffic both answer every routed query and the independent simulated
shopper of :mod:`minielm.rl.shopper` judges both answers, never the RL reward judge; on a cluster it is the
production arm's reward on the same queries in the feedback windows). It promotes
only on a statistically significant win: at least ``canary_min_requests`` canary requests and a
one-sided paired test below ``canary_alpha``. A candidate that changes nothing, or does not win
significantly, leaves production as it was.

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
from minielm.rl.shopper import ShopperScorer

log = get_logger(__name__)

STAGE_ENV = "MINIELM_SERVING__MODEL_STAGE"
PREDICTOR_CONTAINER = "kserve-container"
VERSION_ANNOTATION = "minielm.io/model-version"


LIVE_FEEDBACK = "live feedback rewards"

PROMOTE = "promote"
NO_CHANGE = "no_change"
INCONCLUSIVE = "inconclusive"
WORSE = "not_better"


@dataclass
class CanaryDecision:
    """``verdict``: promote | no_change (the candidate answered every canary request as production did)
    | inconclusive (too few requests) | not_better (no significant win). Only ``promote`` moves production."""

    verdict: str
    reason: str
    n_requests: int
    candidate_reward: float
    production_reward: float
    p_value: float = float("nan")
    alpha: float = float("nan")
    judge: str = ""  # what scored the requests: the replay's shopper judge, or live feedback

    @property
    def promote(self) -> bool:
        return self.verdict == PROMOTE

    @property
    def delta(self) -> float:
        return self.candidate_reward - self.production_reward

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promote": self.promote, "delta": self.delta}


def one_sided_paired_p(differences: np.ndarray) -> float:
    """p-value of a paired t-test of H1: mean difference > 0 (0 when every difference is the same
    positive number, 1 when they are all <= 0 and equal)."""
    n = len(differences)
    mean = float(np.mean(differences))
    sd = float(np.std(differences, ddof=1)) if n > 1 else 0.0
    if sd == 0.0:
        return 0.0 if mean > 0 else 1.0
    from scipy.stats import t as student_t

    return float(student_t.sf(mean / (sd / math.sqrt(n)), df=n - 1))


def decide_canary(
    candidate_rewards: Sequence[float],
    production_rewards: Sequence[float],
    min_requests: int,
    alpha: float,
    judge: str = "",
) -> CanaryDecision:
    """Promote only on a significant win: at least ``min_requests`` paired canary requests and a one-sided
    paired t-test of "candidate reward > production reward" with p < ``alpha``. A candidate whose rewards
    equal production's on every request is "no change": production is kept."""
    if len(candidate_rewards) != len(production_rewards):
        raise RLInputError(
            f"canary: {len(candidate_rewards)} candidate rewards but {len(production_rewards)} "
            "production rewards; the comparison is per request"
        )
    cand_arr = np.asarray(candidate_rewards, dtype=np.float64)
    prod_arr = np.asarray(production_rewards, dtype=np.float64)
    n = len(cand_arr)
    cand = float(cand_arr.mean()) if n else float("nan")
    prod = float(prod_arr.mean()) if n else float("nan")
    if n < min_requests:
        reason = f"inconclusive: only {n} canary requests, fewer than rl.canary_min_requests={min_requests}"
        return CanaryDecision(INCONCLUSIVE, reason + "; production kept", n, cand, prod, alpha=alpha, judge=judge)
    differences = cand_arr - prod_arr
    if not np.any(differences):
        reason = f"no change: the candidate earned production's reward on all {n} canary requests; production kept"
        return CanaryDecision(NO_CHANGE, reason, n, cand, prod, 1.0, alpha, judge)
    p_value = one_sided_paired_p(differences)
    scored_by = f" scored by {judge}" if judge else ""
    summary = (
        f"candidate reward {cand:.4f} vs production {prod:.4f} over {n} requests{scored_by}, one-sided p={p_value:.4f}"
    )
    if p_value < alpha:
        return CanaryDecision(
            PROMOTE, f"significant win: {summary} < rl.canary_alpha={alpha}", n, cand, prod, p_value, alpha, judge
        )
    reason = f"not significantly better: {summary} >= rl.canary_alpha={alpha}; production kept"
    return CanaryDecision(WORSE, reason, n, cand, prod, p_value, alpha, judge)


def canary_slice(n_requests: int, traffic_percent: int, seed: int) -> np.ndarray:
    """Indices of the replayed requests the canary serves: ``traffic_percent`` of them, at random."""
    count = math.ceil(n_requests * traffic_percent / 100)
    return np.sort(np.random.default_rng(seed).choice(n_requests, size=count, replace=False))


def replay_canary(
    queries: Sequence[str],
    candidate: Callable[[list[str]], list[str]],
    production: Callable[[list[str]], list[str]],
    shopper: ShopperScorer,
    traffic_percent: int,
    min_requests: int,
    alpha: float,
    seed: int = 0,
) -> CanaryDecision:
    """Replay distinct queries through a canary split; the independent shopper judges production's and the
    candidate's rewrite of each routed query (the pair the one-sided test compares). A replayed query's score
    is deterministic, so a repeated query would be a copy, not evidence: the canary gets ``traffic_percent`` of
    the distinct queries, raised to ``min_requests`` where the log holds that many, and never a repeat."""
    distinct = list(dict.fromkeys(queries))
    if not distinct:
        raise RLInputError("canary replay needs queries; the replay set is empty")
    share = math.ceil(len(distinct) * traffic_percent / 100)
    count = min(len(distinct), max(share, min_requests))
    routed = [
        distinct[i] for i in np.sort(np.random.default_rng(seed).choice(len(distinct), size=count, replace=False))
    ]
    cand = shopper(routed, candidate(routed))
    prod = shopper(routed, production(routed))
    decision = decide_canary(cand.tolist(), prod.tolist(), min_requests, alpha, judge=shopper.name)
    log.info("canary replay decided", distinct_queries=len(distinct), canary_requests=len(routed), **decision.as_dict())
    return decision


def decide_from_feedback(
    feedback, candidate_version: str, production_version: str, min_requests: int, alpha: float
) -> CanaryDecision:
    """Decide from live feedback windows: each candidate request against production's mean reward on the
    same query (queries production did not serve in the window are left out)."""
    cand = feedback[feedback["model_version"] == candidate_version]
    prod_mean = feedback[feedback["model_version"] == production_version].groupby("query_key")["reward"].mean()
    paired = cand[cand["query_key"].isin(prod_mean.index)]
    return decide_canary(
        paired["reward"].astype(float).tolist(),
        prod_mean.loc[paired["query_key"]].astype(float).tolist(),
        min_requests,
        alpha,
        judge=LIVE_FEEDBACK,
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
            frame, candidate_version, production_version, rl.canary_min_requests, rl.canary_alpha
        )
        if decision.n_requests >= rl.canary_min_requests or clock() - started >= rl.canary_wait_s:
            break
        sleep(rl.canary_poll_s)
    patch = promotion_patch(isvc, candidate_version) if decision.promote else rollback_patch()
    api.patch_namespaced_custom_object(group, version, rl.namespace, "inferenceservices", rl.isvc_name, patch)
    log.info("canary decided", **decision.as_dict())
    return decision
