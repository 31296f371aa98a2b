"""The InferenceService's part of a registry rollback, sent with the caller's cluster credentials.

Serving pods follow their registry stage (``serving.registry_poll_s``), so moving the pointer is
what changes the served version. The InferenceService still has to agree: a canary in flight keeps
sending part of the traffic to a revision serving the rolled-back candidate until its
``canaryTrafficPercent`` goes to 0, and the version annotation must name what is served.
Credentials: the pod's service account inside a cluster, else the caller's kubeconfig (the same
identity ``kubectl`` uses), so on-call can run it from a laptop.
"""

from __future__ import annotations

from typing import Any

from minielm.errors import ServiceError
from minielm.logs import get_logger

log = get_logger(__name__)

ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
VERSION_ANNOTATION = "minielm.io/model-version"


class ClusterError(ServiceError):
    """The cluster or the InferenceService cannot be reached or patched (an environment problem)."""


def caller_api():
    """A CustomObjectsApi with in-cluster credentials, else the caller's kubeconfig."""
    from kubernetes import client, config
    from kubernetes.config import ConfigException

    try:
        config.load_incluster_config()
    except ConfigException:
        try:
            config.load_kube_config()
        except (ConfigException, OSError) as error:
            raise ClusterError(f"no cluster credentials (not in a pod, no usable kubeconfig): {error}") from None
    return client.CustomObjectsApi()


def rollback_patch(isvc: dict[str, Any], version: str) -> dict[str, Any]:
    """Merge patch: name the rolled-back version; a canary in flight gets 0% of the traffic."""
    patch: dict[str, Any] = {
        "metadata": {"annotations": {VERSION_ANNOTATION: version, f"{VERSION_ANNOTATION}-candidate": None}}
    }
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    if predictor.get("canaryTrafficPercent") not in (None, 0):
        patch["spec"] = {"predictor": {"canaryTrafficPercent": 0}}
    return patch


def get_inference_service(api, name: str, namespace: str) -> dict[str, Any]:
    try:
        return api.get_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name)
    except Exception as error:  # ApiException, connection errors: all mean "cannot reach it"
        raise ClusterError(f"InferenceService {namespace}/{name} unreachable: {_short(error)}") from None


def patch_inference_service(api, name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
    try:
        result = api.patch_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name, patch)
    except Exception as error:
        raise ClusterError(f"patching InferenceService {namespace}/{name} failed: {_short(error)}") from None
    log.info("inference service patched", isvc=name, namespace=namespace, patch=patch)
    return result


def _short(error: Exception) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
