"""values.schema.json rejects bad values at `helm template`/`install` time, naming the value."""

from __future__ import annotations

import pytest

from minielm.cli.manifests import CHART_DIR
from tests.unit.helm_fixtures import run_helm

# (--set assignment, text the error must contain)
BAD_VALUES = [
    ("config.kafka.bootstrap_server=kafka:9092", "bootstrap_server"),  # misspelt setting
    ("config.s3.access_key_id=AKIA123", "access_key_id"),  # secrets are never values
    ("config.s3.secret_access_key=hunter2", "secret_access_key"),
    ("config.serving.model_stage=staging", "model_stage"),
    ("config.serving.http_port=70000", "http_port"),
    ("config.rl.canary_traffic_percent=150", "canary_traffic_percent"),
    ("config.kafka.partitions=0", "partitions"),
    ("config.drift_monitor.enabled=true", "drift_monitor"),  # a section Settings does not have
    ("config.seed=abc", "seed"),
    ("images.jobs.tag=latest", "images.jobs.tag"),
    ("images.serving.pullPolicy=Sometimes", "pullPolicy"),
    ("kserve.deploymentMode=Knative", "deploymentMode"),
    ("kserve.inferenceServices.rewriter.minReplicas=-1", "minReplicas"),
    ("kserve.inferenceServices.rewriter.canaryTrafficPercent=101", "canaryTrafficPercent"),
    ("kserve.inferenceServices.rewriter.serveRelevance=maybe", "serveRelevance"),
    ("kserve.inferenceServices.relevance.resources.limits.cpu=lots", "cpu"),
    ("feedbackAggregator.replica=2", "replica"),
    ("feedbackAggregator.replicas=-1", "replicas"),
    ("feast.port=abc", "port"),
    ("driftMonitor.schedule=every hour", "schedule"),
    ("driftMonitor.concurrencyPolicy=Sometimes", "concurrencyPolicy"),
    ("monitoring.prometheusRule.servingErrorRatio=2", "servingErrorRatio"),
    ("monitoring.serviceMonitor.enabled=true", "serviceMonitor"),
    ("networkPolicy.ingressNamespaces[0]=Not_A_Namespace", "ingressNamespaces"),
    ("runAsUser=0", "runAsUser"),
    ("s3.existingSecret=My Secret", "existingSecret"),
    ("serviceAccount.rolloutSubjects[0].name=pipeline-runner", "namespace"),  # a subject needs its namespace
]


@pytest.mark.parametrize("assignment,named", BAD_VALUES, ids=[a for a, _ in BAD_VALUES])
def test_schema_rejects_bad_value(assignment, named):
    done = run_helm("template", "minielm", str(CHART_DIR), "--set", assignment)
    assert done.returncode != 0, f"{assignment} was accepted"
    assert "don't meet the specifications of the schema" in done.stderr, done.stderr
    assert named in done.stderr, done.stderr


def test_schema_rejects_a_values_file_with_a_misplaced_section(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  bootstrap_servers: kafka:9092\n")  # belongs under config:
    done = run_helm("template", "minielm", str(CHART_DIR), "--values", str(bad))
    assert done.returncode != 0 and "kafka" in done.stderr, done.stderr


def test_alerts_need_a_runbook_url():
    done = run_helm(
        "template",
        "minielm",
        str(CHART_DIR),
        "--set",
        "monitoring.prometheusRule.enabled=true",
        "--set",
        "config.drift.runbook_url=docs/runbook.md",
    )
    assert done.returncode != 0 and "config.drift.runbook_url must be an http(s) URL" in done.stderr, done.stderr


def test_good_overrides_are_accepted():
    done = run_helm(
        "template",
        "minielm",
        str(CHART_DIR),
        "--set",
        "config.kafka.bootstrap_servers=a:9092\\,b:9092",
        "--set",
        "kserve.inferenceServices.rewriter.canaryTrafficPercent=25",
        "--set",
        "driftMonitor.schedule=@daily",
    )
    assert done.returncode == 0, done.stderr
    assert "canaryTrafficPercent: 25" in done.stdout
    raw = run_helm(
        "template",
        "minielm",
        str(CHART_DIR),
        "--set",
        "kserve.deploymentMode=RawDeployment",
        "--set",
        "config.rl.kserve_rollout=false",
    )
    assert raw.returncode == 0, raw.stderr


# Values each valid alone but wrong together: (--set assignments, text naming them)
BAD_COMBINATIONS = [
    (
        ["kserve.inferenceServices.rewriter.minReplicas=5", "kserve.inferenceServices.rewriter.maxReplicas=2"],
        "rewriter.minReplicas (5) must not exceed kserve.inferenceServices.rewriter.maxReplicas (2)",
    ),
    (
        ["kserve.deploymentMode=RawDeployment", "kserve.inferenceServices.relevance.canaryTrafficPercent=10"],
        "kserve.inferenceServices.relevance.canaryTrafficPercent needs kserve.deploymentMode=Serverless",
    ),
    (["kserve.deploymentMode=RawDeployment"], "config.rl.kserve_rollout=true needs kserve.deploymentMode=Serverless"),
    (
        ["kserve.inferenceServices.rewriter.enabled=false"],
        "config.rl.kserve_rollout=true needs kserve.inferenceServices",
    ),
    (
        ["config.kafka.heartbeat_interval_ms=20000"],
        "config.kafka.heartbeat_interval_ms (20000) must be below config.kafka.session_timeout_ms (10000)",
    ),
    (["config.feedback.unmatched_after_s=60"], "config.feedback.unmatched_after_s (60) must be at least"),
    (["config.kafka.security_protocol=SASL_SSL"], "needs kafka.sasl.existingSecret"),
    (["kafka.sasl.existingSecret=kafka-user"], "uses no SASL"),
    (["kafka.tls.caSecret=cluster-ca"], "uses no TLS"),
    (["kafka.strimziUser=true"], "kafka.strimziUser=true needs config.kafka.sasl_username"),
    (
        ["kafka.strimziUser=true", "config.kafka.sasl_username=minielm"],
        "kafka.strimziUser=true renders a SCRAM-SHA-512 KafkaUser",
    ),
]


@pytest.mark.parametrize("assignments,named", BAD_COMBINATIONS, ids=[" ".join(a) for a, _ in BAD_COMBINATIONS])
def test_inconsistent_values_fail_naming_them(assignments, named):
    args = [arg for assignment in assignments for arg in ("--set", assignment)]
    done = run_helm("template", "minielm", str(CHART_DIR), *args)
    assert done.returncode != 0, f"{assignments} were accepted"
    assert named in done.stderr, done.stderr
