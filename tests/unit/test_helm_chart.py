"""The Helm chart, validated offline: lint, render, Kubernetes and KServe schemas, pod security,
the settings ConfigMap against the typed config, and the generated files being up to date."""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from minielm.cli.manifests import CHART_DIR, PROFILES, generated_files, render_profile
from minielm.config import Settings, load_settings
from tests.unit.helm_fixtures import (
    CUSTOM_KINDS,
    KSERVE_CRD_DIR,
    RENDER_CASES,
    REPO_ROOT,
    _rendered_text,
    helm,
    pod_specs,
    rendered,
    run_helm,
)

K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


@pytest.mark.parametrize(
    "values", [[], ["--values", str(CHART_DIR / "values-production.yaml")]], ids=["default", "production"]
)
def test_helm_lint_strict(values):
    done = run_helm("lint", "--strict", str(CHART_DIR), *values)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("case", RENDER_CASES)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate_against_kubernetes(case, version):
    checked = 0
    for doc in rendered(case):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: {error.message} "
                f"at {'.'.join(str(p) for p in error.path)}"
            )
        checked += 1
    assert checked >= 15


def _crd_schemas() -> dict[tuple[str, str], dict]:
    if not KSERVE_CRD_DIR.is_dir():
        pytest.skip(f"KServe CRDs not found at {KSERVE_CRD_DIR} (the shared schemas folder beside the repo)")
    return _load_crd_schemas()


@lru_cache(maxsize=1)
def _load_crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for name in ("serving.kserve.io_inferenceservices.yaml", "serving.kserve.io_servingruntimes.yaml"):
        for crd in yaml.load_all((KSERVE_CRD_DIR / name).read_text(), Loader=yaml.CSafeLoader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            for version in crd["spec"]["versions"]:
                api_version = f"{crd['spec']['group']}/{version['name']}"
                schemas[(api_version, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _unknown_fields(obj, schema: dict, path: str = "") -> list[str]:
    """Fields the API server would prune silently: keys the structural schema does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        found = []
        for key, value in obj.items():
            if props is not None and key in props:
                found += _unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += _unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None and not extra:
                found.append(f"{path}.{key}")
        return found
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [f for i, item in enumerate(obj) for f in _unknown_fields(item, schema["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("case", RENDER_CASES)
def test_kserve_resources_validate_against_crd_schema(case):
    schemas = _crd_schemas()
    kserve_docs = [d for d in rendered(case) if d["apiVersion"].startswith("serving.kserve.io/")]
    assert {d["kind"] for d in kserve_docs} >= {"InferenceService"}
    for doc in kserve_docs:
        schema = copy.deepcopy(schemas[(doc["apiVersion"], doc["kind"])])
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{doc['metadata']['name']}: {e.message} at {list(e.path)}" for e in errors)
        assert _unknown_fields(doc, schema) == [], f"{doc['metadata']['name']}: fields the CRD does not declare"


def test_crd_check_catches_a_misspelt_field():
    schemas = _crd_schemas()
    doc = next(d for d in rendered("default") if d["kind"] == "InferenceService")
    schema = schemas[(doc["apiVersion"], doc["kind"])]
    doc["spec"]["predictor"]["minReplica"] = doc["spec"]["predictor"].pop("minReplicas")
    doc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert _unknown_fields(doc, schema) == [".spec.predictor.minReplica"]
    assert any("canaryTrafficPercent" in str(e.path) for e in jsonschema.Draft7Validator(schema).iter_errors(doc))


def test_inference_services_match_the_values():
    docs = {d["metadata"]["name"]: d for d in rendered("production") if d["kind"] == "InferenceService"}
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    prod = yaml.safe_load((CHART_DIR / "values-production.yaml").read_text())
    rewriter = docs[prod["config"].get("rl", {}).get("isvc_name", values["config"]["rl"]["isvc_name"])]
    predictor = rewriter["spec"]["predictor"]
    assert predictor["minReplicas"] == 2 and predictor["maxReplicas"] == 10
    assert "canaryTrafficPercent" not in predictor  # the RL pipeline sets it while a rollout is in flight
    container = predictor["containers"][0]
    assert container["command"] == ["minielm", "serve", "--no-services", "--no-apply-features", "--no-relevance"]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    relevance = docs[values["config"]["models"]["student_relevance"]]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in relevance
    # Storage from S3 through a secret reference in the default profile; none rendered inline.
    default_env = next(d for d in rendered("default") if d["kind"] == "InferenceService")["spec"]["predictor"][
        "containers"
    ][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in default_env if "valueFrom" in e}
    assert refs == {"AWS_ACCESS_KEY_ID": "minielm-s3", "AWS_SECRET_ACCESS_KEY": "minielm-s3"}


@pytest.mark.parametrize("case", RENDER_CASES)
def test_every_pod_is_locked_down(case):
    pods = 0
    for doc in rendered(case):
        for spec in pod_specs(doc):
            pods += 1
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            # Knative (Serverless InferenceServices) takes no pod securityContext by default: the
            # container's own context must carry everything, so it is checked for every pod.
            if doc["kind"] != "InferenceService":
                assert spec["securityContext"]["runAsNonRoot"] is True, where
                assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            elif doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless":
                assert "securityContext" not in spec, where
            else:
                assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["automountServiceAccountToken"] is False, where
            assert spec["serviceAccountName"], where
            for container in spec["containers"]:
                sc = container["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
                # Only the container fields Knative accepts without feature flags.
                assert set(sc) <= {
                    "allowPrivilegeEscalation",
                    "capabilities",
                    "readOnlyRootFilesystem",
                    "runAsGroup",
                    "runAsNonRoot",
                    "runAsUser",
                    "seccompProfile",
                }, where
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert sc["runAsUser"] >= 10000, where
                for kind in ("requests", "limits"):
                    assert set(container["resources"][kind]) == {"cpu", "memory"}, where
                if doc["kind"] not in ("Job", "CronJob"):
                    assert container["livenessProbe"] and container["readinessProbe"], where
                assert not any("value" in e and "KEY" in e["name"] for e in container.get("env", [])), where
    assert pods >= 5


def test_rbac_is_least_privilege():
    docs = rendered("production")
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
    assert [r["kind"] for r in roles] == ["Role"]
    isvcs = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "InferenceService")
    assert roles[0]["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": isvcs,
            "verbs": ["get", "patch"],
        }
    ]
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert {(s["name"], s["namespace"]) for s in binding["subjects"]} == {
        ("minielm-pipeline", "minielm"),
        ("pipeline-runner", "kubeflow"),
    }
    assert not [d for d in docs if d["kind"] in ("ClusterRoleBinding",)]
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


def test_no_secret_is_rendered():
    for case in RENDER_CASES:
        assert not [d for d in rendered(case) if d["kind"] == "Secret"]


def _settings_configmap(case: str) -> dict:
    return next(d for d in rendered(case) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-settings"))


@pytest.mark.parametrize("case", RENDER_CASES)
def test_settings_configmap_loads_as_the_typed_config(case, tmp_path):
    text = _settings_configmap(case)["data"]["settings.yaml"]
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    # The pods get the SASL password from a Secret, through the environment, as the values say.
    pod_env = {
        e["name"] for d in rendered(case) for spec in pod_specs(d) for c in spec["containers"] for e in c.get("env", [])
    }
    environ = {"MINIELM_KAFKA__SASL_PASSWORD": "from-the-secret"} if "MINIELM_KAFKA__SASL_PASSWORD" in pod_env else {}
    settings = load_settings(path, environ=environ, use_services_state=False)
    expected = yaml.safe_load(text)
    if environ:
        expected["kafka"]["sasl_password"] = "from-the-secret"
    assert Settings.model_validate(expected) == settings
    assert (settings.kafka.security_protocol == "SASL_SSL") == (case == "production")
    assert settings.rl.namespace == "minielm"  # always the release namespace
    assert settings.serving.host == "0.0.0.0"
    assert settings.feast.profile == "cluster"
    assert settings.s3.access_key_id is None  # keys come from the Secret, through the environment
    names = {d["metadata"]["name"] for d in rendered(case) if d["kind"] == "InferenceService"}
    assert settings.rl.isvc_name in names
    # production uses AWS S3: a null endpoint must survive Helm (which drops null values).
    assert (settings.s3.endpoint_url is None) == (case == "production")


def test_configmap_check_fails_on_a_field_the_settings_do_not_have(tmp_path):
    from minielm.config import ConfigError

    data = yaml.safe_load(_settings_configmap("default")["data"]["settings.yaml"])
    data["kafka"]["bootstrap_server"] = data["kafka"].pop("bootstrap_servers")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="bootstrap_server"):
        load_settings(path, environ={}, use_services_state=False)


@pytest.mark.parametrize("case", RENDER_CASES)
def test_feature_store_yaml_is_what_features_apply_writes(case):
    from minielm.features.repo import render_feature_store_yaml

    data = _settings_configmap(case)["data"]
    settings = Settings.model_validate(yaml.safe_load(data["settings.yaml"]))
    assert yaml.safe_load(data["feature_store.yaml"]) == render_feature_store_yaml(settings)


def test_feature_store_yaml_is_a_valid_feast_cluster_config(monkeypatch):
    from feast.repo_config import RepoConfig

    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    data = _settings_configmap("production")["data"]
    raw = yaml.safe_load(os.path.expandvars(data["feature_store.yaml"]))
    config = RepoConfig(repo_path=Path("/etc/minielm"), **raw)
    settings = Settings.model_validate(yaml.safe_load(data["settings.yaml"]))
    assert config.project == settings.feast.project
    assert config.online_store.type == "redis"
    assert "password=s3cret" in config.online_store.connection_string
    assert config.offline_store.type == "duckdb"
    assert config.registry.path == f"s3://{settings.s3.bucket}/feast/registry.db"


def test_prometheus_alerts_link_their_runbook_section():
    rule = next(d for d in rendered("production") if d["kind"] == "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs = " ".join(a["expr"] for a in alerts)
    assert "minielm_drift_detected" in exprs and "minielm_requests_total" in exprs
    from minielm.drift.checks import CHECKS

    # Every drift check is covered by exactly one alert, which links that check's runbook section.
    for check in CHECKS:
        covering = [
            a
            for a in alerts
            if a["alert"] == "MiniELMDriftDetected"
            and check.name in re.search(r'check=~"([^"]*)"', a["expr"]).group(1).split("|")
        ]
        assert len(covering) == 1, check.name
        assert covering[0]["annotations"]["runbook_url"].endswith("#" + check.runbook_section)
    for alert in alerts:
        assert re.match(r"^https?://.+/runbook\.md#[a-z0-9-]+$", alert["annotations"]["runbook_url"]), alert["alert"]
    runbook = REPO_ROOT / "docs" / "runbook.md"
    if not runbook.is_file():
        pytest.skip("docs/runbook.md (the drift helper's) not written yet: anchors not checked")
    text = runbook.read_text()
    slugs = set(re.findall(r'<a id="([^"]+)"', text)) | {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }
    missing = [
        a["annotations"]["runbook_url"].rsplit("#", 1)[1]
        for a in alerts
        if a["annotations"]["runbook_url"].rsplit("#", 1)[1] not in slugs
    ]
    assert not missing, f"runbook sections missing from docs/runbook.md: {missing}"


def test_network_policies_cover_every_pod():
    docs = rendered("production")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if "ingress" not in p["spec"])
    selector = deny["spec"]["podSelector"]["matchLabels"]
    for doc in docs:
        for _spec in pod_specs(doc):
            labels = (
                doc["spec"]["predictor"]["labels"]
                if doc["kind"] == "InferenceService"
                else doc["spec"]
                .get("template", doc["spec"].get("jobTemplate", {}).get("spec", {}).get("template", {}))
                .get("metadata", {})
                .get("labels", {})
            )
            assert selector.items() <= labels.items(), f"{doc['kind']}/{doc['metadata']['name']} not denied by default"


def test_generated_files_are_up_to_date():
    """manifests/*.yaml, values.schema.json's config part, drift-checks.json and the install doc's table."""
    stale = [str(g.path.relative_to(REPO_ROOT)) for g in generated_files() if not g.is_current()]
    for profile in PROFILES:
        path = REPO_ROOT / "manifests" / f"{profile}.yaml"
        if not path.is_file() or path.read_text() != render_profile(profile, helm()):
            stale.append(str(path.relative_to(REPO_ROOT)))
    assert not stale, f"out of date with the chart or minielm.config: {stale}; run `minielm manifests render`"


def test_values_schema_config_part_is_the_settings_schema():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    config = schema["properties"]["config"]
    assert set(config["properties"]) == set(Settings.model_fields)
    s3 = schema["definitions"][config["properties"]["s3"]["$ref"].rsplit("/", 1)[1]]
    assert "access_key_id" not in s3["properties"] and s3["additionalProperties"] is False


def test_manifests_render_command_checks_and_writes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import minielm.cli.manifests as manifests
    from minielm.cli import app

    helm()
    monkeypatch.setattr(manifests, "MANIFESTS_DIR", tmp_path)
    runner = CliRunner()
    checked = runner.invoke(app, ["manifests", "render", "--check"])
    assert checked.exit_code == 1, checked.output
    assert f"stale {tmp_path / 'default.yaml'}" in checked.output and not list(tmp_path.iterdir())
    written = runner.invoke(app, ["manifests", "render"])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.yaml", "production.yaml"]
    assert (tmp_path / "default.yaml").read_text() == (REPO_ROOT / "manifests" / "default.yaml").read_text()
    assert runner.invoke(app, ["manifests", "render", "--check"]).exit_code == 0


def test_alert_metrics_are_the_ones_the_code_exports():
    """A renamed metric in serving/ or minielm/drift/ must not leave an alert that never fires."""
    rule = next(d for d in rendered("production") if d["kind"] == "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    sources = "".join(
        (REPO_ROOT / path).read_text()
        for path in ("serving/metrics.py", "minielm/drift/alerts.py", "minielm/feedback/observability.py")
    )
    declared = set(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(minielm_[a-z0-9_]+)"', sources))
    used = set(re.findall(r"\b(minielm_[a-z0-9_]+)", exprs))
    assert used, exprs
    for metric in used:
        base = metric.removesuffix("_total")
        assert base in declared, f"{metric} is not a metric the code declares"


def test_strimzi_numbers_render_as_integers_in_the_kafka_namespace():
    text = _rendered_text("all-optional-parts")
    assert "e+" not in text, "a number rendered in float notation"
    topics = [d for d in rendered("all-optional-parts") if d["kind"] == "KafkaTopic"]
    assert len(topics) == 3
    for topic in topics:
        assert topic["metadata"]["namespace"] == "kafka"
        assert topic["spec"]["config"]["retention.ms"] == 604800000
        assert all(isinstance(topic["spec"][k], int) for k in ("partitions", "replicas"))


def test_production_secures_kafka_from_secrets():
    docs = rendered("production")
    (user,) = [d for d in docs if d["kind"] == "KafkaUser"]
    assert user["metadata"]["namespace"] == "kafka"
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    topics = {
        acl["resource"]["name"] for acl in user["spec"]["authorization"]["acls"] if acl["resource"]["type"] == "topic"
    }
    assert topics == {"minielm.rewrites", "minielm.feedback", "minielm.feedback.dlq"}
    for doc in docs:
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                env = {e["name"]: e for e in container.get("env", [])}
                ref = env["MINIELM_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "minielm-kafka-user", "key": "password"}
                assert {"name": "kafka-ca", "mountPath": "/etc/minielm-kafka", "readOnly": True} in container[
                    "volumeMounts"
                ]
            assert {
                "name": "kafka-ca",
                "secret": {"secretName": "minielm-cluster-ca-cert", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
            } in spec["volumes"]


def test_cluster_defaults_fit_real_traffic():
    settings = yaml.safe_load(_settings_configmap("production")["data"]["settings.yaml"])
    assert settings["feedback"]["window_s"] >= 60
    # the hourly drift check compares about an hour of windows, not seconds of traffic
    assert settings["feedback"]["window_s"] * settings["drift"]["current_windows"] == 3600
    assert settings["rl"]["kserve_rollout"] is True
    assert settings["serving"]["index_prefix"]
    (rewriter,) = [
        d
        for d in rendered("production")
        if d["kind"] == "InferenceService" and d["metadata"]["name"] == "student-rewriter"
    ]
    assert "canaryTrafficPercent" not in rewriter["spec"]["predictor"], "a canary only while a rollout is in flight"


def test_drift_alerts_carry_the_report_link_the_drift_job_exports():
    from minielm.drift.alerts import metrics_registry
    from minielm.drift.monitor import DriftResult

    rule = next(d for d in rendered("production") if d["kind"] == "PrometheusRule")
    drift_rules = [r for g in rule["spec"]["groups"] if g["name"] == "minielm-drift" for r in g["rules"]]
    linked = [r for r in drift_rules if r["alert"] in ("MiniELMDriftDetected", "MiniELMDriftNoData")]
    assert linked and all('query "minielm_drift_report_info"' in r["annotations"]["report_url"] for r in linked)
    result = DriftResult("run-7", "ok", [], [], 0, 0, outputs={"report_url": "https://reports/run-7.html"})
    samples = {
        s.name: s.labels for m in metrics_registry(result).collect() for s in m.samples if s.name.endswith("_info")
    }
    assert samples["minielm_drift_report_info"] == {"run_id": "run-7", "report_url": "https://reports/run-7.html"}
