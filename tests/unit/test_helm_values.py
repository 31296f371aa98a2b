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
        "kserve.deploymentMode=RawDeployment",
        "--set",
        "driftMonitor.schedule=@daily",
    )
    assert done.returncode == 0, done.stderr
    assert "canaryTrafficPercent: 25" in done.stdout


def test_chart_jobs_image_is_the_settings_jobs_image():
    """KFP task pods run settings.pipelines.image (default JOBS_IMAGE); the chart's own jobs pods the same."""
    import yaml

    from minielm.config import JOBS_IMAGE

    jobs = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["images"]["jobs"]
    assert f"{jobs['repository']}:{jobs['tag']}" == JOBS_IMAGE
