"""The recurring RL retraining pipeline: feedback windows -> GRPO -> evaluate -> gate -> canary.

prepare (windows since the watermark; "nothing to do" below rl.min_new_requests) -> train (GRPO from
the production rewriter) -> evaluate (held-out relevant@k, replay reward, KL; quality gate) ->
rollout (register candidate, canary, promote or roll back, advance the watermark). The pipeline's
output is the rollout summary as JSON.
"""

from pathlib import Path

from kfp import dsl

from components.rl import rl_evaluate, rl_prepare, rl_rollout, rl_train
from minielm.config import PipelinesConfig, Settings
from pipelines.local_run import run_locally
from pipelines.platform import deploy

NAME = "rl_retraining"
# Parameters that name data: s3:// URIs on a cluster (checked before a run is submitted).
URI_PARAMETERS = ("data_uri", "index_uri", "judge_uri")


def build_pipeline(cluster: PipelinesConfig):
    """The pipeline, its task pods configured from ``cluster`` (image, settings, secrets, resources)."""

    @dsl.pipeline(
        name="minielm-rl-retraining",
        description="Online RL (GRPO) of the student rewriter from feedback windows and the relevance judge, "
        "gated and rolled out as a canary.",
    )
    def rl_retraining(
        data_uri: str, index_uri: str, config_file: str = "", judge_uri: str = "", run_id: str = ""
    ) -> str:
        prepare = rl_prepare(config_file=config_file, data_uri=data_uri, index_uri=index_uri, judge_uri=judge_uri)
        deploy(prepare, cluster)
        status = prepare.outputs["status"]
        inputs = {
            "data": prepare.outputs["data"],
            "index": prepare.outputs["index"],
            "judge": prepare.outputs["judge"],
        }
        train = rl_train(config_file=config_file, status=status, prepared=prepare.outputs["prepared"], **inputs)
        deploy(train, cluster, training=True)
        evaluate = rl_evaluate(config_file=config_file, status=status, trained=train.outputs["trained"], **inputs)
        deploy(evaluate, cluster, training=True)
        rollout = rl_rollout(
            config_file=config_file,
            status=status,
            run_id=run_id,
            prepared=prepare.outputs["prepared"],
            trained=train.outputs["trained"],
            evaluation=evaluate.outputs["evaluation"],
            data=inputs["data"],
            index=inputs["index"],
        )
        deploy(rollout, cluster)
        return rollout.output

    return rl_retraining


def default_arguments(settings: Settings) -> dict:
    """Data and index where ``minielm data`` puts them locally; judge from the registry."""
    data_dir = Path(settings.paths.data_dir)
    return {"data_uri": str(data_dir / "synthetic"), "index_uri": str(data_dir / "index"), "judge_uri": ""}


def cluster_arguments(settings: Settings) -> dict:
    """The data a cluster run reads unless it names its own: ``pipelines.data_uri`` and ``pipelines.index_uri``."""
    uris = {"data_uri": settings.pipelines.data_uri, "index_uri": settings.pipelines.index_uri}
    return {name: uri for name, uri in uris.items() if uri}


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (one subprocess per task) against the configured services."""
    return run_locally(build_pipeline(settings.pipelines), NAME, settings, default_arguments(settings), params, "rl")
