"""What each task pod gets on a cluster, from ``settings.pipelines``: the jobs image, the settings ConfigMap
mounted as ``$MINIELM_CONFIG``, the S3 keys from the existing Secret, CPU/memory requests, the accelerator
(training tasks only) and the node selector and tolerations.

KFP creates its own pods, so none of this comes from the Helm chart's Deployments: it is written into
the compiled pipeline (``platforms.kubernetes`` and each executor's ``resources``). kfp.local ignores it.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from minielm.config import CONFIG_ENV, PipelinesConfig

SETTINGS_FILE = "settings.yaml"


def settings_path(cluster: PipelinesConfig) -> str:
    return f"{cluster.settings_mount_path.rstrip('/')}/{SETTINGS_FILE}"


def deploy(task: PipelineTask, cluster: PipelinesConfig, training: bool = False) -> PipelineTask:
    """Configure one task's pod; ``training`` tasks (teachers, distillation, RL) get the bigger requests and the
    accelerator."""
    task.container_spec.image = cluster.image
    kubernetes.use_config_map_as_volume(task, cluster.settings_configmap, mount_path=cluster.settings_mount_path)
    task.set_env_variable(CONFIG_ENV, settings_path(cluster))
    if cluster.s3_secret:
        kubernetes.use_secret_as_env(
            task,
            cluster.s3_secret,
            secret_key_to_env={
                cluster.s3_access_key_id_key: "AWS_ACCESS_KEY_ID",
                cluster.s3_secret_access_key_key: "AWS_SECRET_ACCESS_KEY",
            },
        )
    resources = cluster.training_task_resources if training else cluster.task_resources
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory)
    if resources.cpu_limit:
        task.set_cpu_limit(resources.cpu_limit)
    if resources.memory_limit:
        task.set_memory_limit(resources.memory_limit)
    if training and cluster.accelerator is not None:
        task.set_accelerator_type(cluster.accelerator.type).set_accelerator_limit(cluster.accelerator.count)
    for label, value in sorted(cluster.node_selector.items()):
        kubernetes.add_node_selector(task, label, value)
    for toleration in cluster.tolerations:
        kubernetes.add_toleration(
            task, key=toleration.key, operator=toleration.operator, value=toleration.value, effect=toleration.effect
        )
    return task
