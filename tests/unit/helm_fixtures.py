"""What the Helm chart tests share: the helm binary, rendering, and the rendered documents."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from minielm.cli.manifests import CHART_DIR, NAMESPACE, PROFILES, RELEASE_NAME, HelmNotFound, helm_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
KSERVE_CRD_DIR = SHARED_DIR / "schemas" / "kserve"
# Everything the chart can render: every optional part switched on.
ALL_ON = [
    "--set",
    "monitoring.podMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "kafkaTopics.strimzi.enabled=true",
    "--set",
    "pipelineSchedules.drift_monitoring=true",
    "--set",
    "feast.redis.existingSecret=minielm-redis",
]
# Kinds whose schema comes from a CRD rather than Kubernetes itself.
CUSTOM_KINDS = {
    "InferenceService",
    "ServingRuntime",
    "KafkaTopic",
    "KafkaUser",
    "PrometheusRule",
    "ServiceMonitor",
    "PodMonitor",
}
RENDER_CASES = {
    "default": [],
    "production": [],
    "all-optional-parts": ALL_ON,
    # RawDeployment has no traffic split, so the RL canary replays traffic instead.
    "raw-deployment": ["--set", "kserve.deploymentMode=RawDeployment", "--set", "config.rl.kserve_rollout=false"],
}


def helm() -> str:
    try:
        return helm_binary()
    except HelmNotFound as error:
        pytest.skip(f"{error}")


def run_helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False)


def template_args(case: str) -> list[str]:
    profile = case if case in PROFILES else "default"
    args = ["template", RELEASE_NAME, str(CHART_DIR), "--namespace", NAMESPACE]
    for values_file in PROFILES[profile]:
        args += ["--values", str(CHART_DIR / values_file)]
    return args + RENDER_CASES[case]


@cache
def _rendered_text(case: str) -> str:
    done = run_helm(*template_args(case))
    assert done.returncode == 0, f"helm template ({case}) failed:\n{done.stderr}"
    return done.stdout


def rendered(case: str) -> list[dict]:
    """The documents `helm template` renders for one case (fresh copies)."""
    return [doc for doc in yaml.safe_load_all(_rendered_text(case)) if doc]


def pod_specs(doc: dict) -> list[dict]:
    """The pod specs inside a workload (Deployment, Job, CronJob, InferenceService predictor)."""
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [doc["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "InferenceService":
        return [doc["spec"]["predictor"]]
    return []
