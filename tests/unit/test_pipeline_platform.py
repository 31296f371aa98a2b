"""Every task pod of every compiled pipeline gets the settings, the S3 Secret, resources, the image and the
placement from ``settings.pipelines``; the teacher, distillation and RL training tasks get the accelerator."""

from __future__ import annotations

import pytest
import yaml

from minielm.config import JOBS_IMAGE, PipelinesConfig
from pipelines.registry import PIPELINE_MODULES, compile_pipeline, compiled_path

TRAINING_TASKS = {
    "training": {
        "fine-tune-rewriter-teacher",
        "fine-tune-relevance-teacher",
        "label-augmented-pairs",
        "distill-relevance",
        "distill-rewriter",
        "evaluate-students",
    },
    "rl_retraining": {"rl-train", "rl-evaluate"},
    "drift_monitoring": set(),
}


def executors(path) -> tuple[dict, dict, dict]:
    """(task name -> container, task name -> kubernetes executor config, task name -> executor label)."""
    pipeline, *platform = list(yaml.safe_load_all(path.read_text()))
    labels = {
        name: task["componentRef"]["name"].replace("comp-", "exec-")
        for name, task in pipeline["root"]["dag"]["tasks"].items()
    }
    containers = {name: pipeline["deploymentSpec"]["executors"][label]["container"] for name, label in labels.items()}
    kube = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}
    return containers, {name: kube.get(label, {}) for name, label in labels.items()}, labels


@pytest.mark.parametrize("name", sorted(PIPELINE_MODULES))
def test_checked_in_pipelines_mount_settings_and_secret_with_requests_on_every_task(name):
    containers, kube, _ = executors(compiled_path(name))
    cluster = PipelinesConfig()
    assert set(TRAINING_TASKS[name]) <= set(containers)
    for task, container in containers.items():
        assert container["image"] == JOBS_IMAGE, task
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        assert env["MINIELM_CONFIG"] == "/etc/minielm/settings.yaml", task
        [mount] = kube[task]["configMapAsVolume"]
        assert (mount["configMapName"], mount["mountPath"]) == ("minielm-settings", "/etc/minielm"), task
        [secret] = kube[task]["secretAsEnv"]
        assert secret["secretName"] == "minielm-s3", task
        assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        }, task
        wanted = cluster.training_task_resources if task in TRAINING_TASKS[name] else cluster.task_resources
        resources = container["resources"]
        assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == (wanted.cpu, wanted.memory)
        assert "accelerator" not in resources, f"{task} asks for an accelerator that is not configured"
        assert "nodeSelector" not in kube[task] and "tolerations" not in kube[task]


@pytest.mark.parametrize("name", sorted(PIPELINE_MODULES))
def test_accelerator_image_placement_and_names_come_from_the_settings(name, tmp_path):
    cluster = PipelinesConfig(
        image="registry.example.com/ml/minielm-jobs:1.2.3",
        settings_configmap="prod-minielm-settings",
        s3_secret="prod-s3",
        s3_access_key_id_key="key-id",
        s3_secret_access_key_key="key",
        accelerator={"type": "nvidia.com/gpu", "count": 2},
        training_task_resources={"cpu": "8", "memory": "32Gi", "memory_limit": "40Gi"},
        node_selector={"pool": "ml"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    containers, kube, _ = executors(compile_pipeline(name, tmp_path, cluster))
    for task, container in containers.items():
        assert container["image"] == "registry.example.com/ml/minielm-jobs:1.2.3"
        assert kube[task]["configMapAsVolume"][0]["configMapName"] == "prod-minielm-settings"
        secret = kube[task]["secretAsEnv"][0]
        assert secret["secretName"] == "prod-s3"
        assert {k["secretKey"] for k in secret["keyToEnv"]} == {"key-id", "key"}
        assert kube[task]["nodeSelector"]["labels"] == {"pool": "ml"}
        assert kube[task]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        resources = container["resources"]
        if task in TRAINING_TASKS[name]:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", task
            assert resources["accelerator"]["resourceCount"] == "2", task
            assert (resources["resourceCpuRequest"], resources["resourceMemoryLimit"]) == ("8", "40Gi")
        else:
            assert "accelerator" not in resources, task
            assert resources["resourceCpuRequest"] == "1"


def test_no_s3_secret_leaves_the_pod_identity(tmp_path):
    containers, kube, _ = executors(compiled_path("drift_monitoring"))
    assert kube["drift-check"]["secretAsEnv"]
    _, kube, _ = executors(compile_pipeline("drift_monitoring", tmp_path, PipelinesConfig(s3_secret=None)))
    assert "secretAsEnv" not in kube["drift-check"]
    assert kube["drift-check"]["configMapAsVolume"]


def test_bad_cluster_settings_name_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="accelerator.count"):
        PipelinesConfig(accelerator={"type": "nvidia.com/gpu", "count": 0})
    with pytest.raises(ValidationError, match="settings_mount_path"):
        PipelinesConfig(settings_mount_path="etc/minielm")
    with pytest.raises(ValidationError, match="kfp_host"):
        PipelinesConfig(kfp_host="ml-pipeline:8888")


def test_the_jobs_image_constant_is_the_charts_default():
    values = yaml.safe_load((compiled_path("training").parents[2] / "helm" / "minielm" / "values.yaml").read_text())
    jobs = values["images"]["jobs"]
    assert f"{jobs['repository']}:{jobs['tag']}" == JOBS_IMAGE
