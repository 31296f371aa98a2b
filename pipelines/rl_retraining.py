"""The recurring RL retraining pipeline: feedback windows -> GRPO -> evaluate -> gate -> canary.

prepare (windows since the watermark; "nothing to do" below rl.min_new_requests) -> train (GRPO from
the production rewriter) -> evaluate (held-out relevant@k, replay reward, KL; quality gate) ->
rollout (register candidate, canary, promote or roll back, advance the watermark). The pipeline's
output is the rollout summary as JSON.
"""

from pathlib import Path

from kfp import dsl

from components.rl import rl_evaluate, rl_prepare, rl_rollout, rl_train
from minielm.config import Settings
from pipelines.local_run import run_locally

NAME = "rl_retraining"


@dsl.pipeline(
    name="minielm-rl-retraining",
    description="Online RL (GRPO) of the student rewriter from feedback windows and the relevance judge, "
    "gated and rolled out as a canary.",
)
def pipeline_func(data_dir: str, index_dir: str, config_file: str = "", judge_dir: str = "", run_id: str = "") -> str:
    prepare = rl_prepare(config_file=config_file, data_dir=data_dir)
    status = prepare.outputs["status"]
    train = rl_train(
        config_file=config_file,
        status=status,
        data_dir=data_dir,
        index_dir=index_dir,
        judge_dir=judge_dir,
        prepared=prepare.outputs["prepared"],
    )
    evaluate = rl_evaluate(
        config_file=config_file,
        status=status,
        data_dir=data_dir,
        index_dir=index_dir,
        judge_dir=judge_dir,
        trained=train.outputs["trained"],
    )
    rollout = rl_rollout(
        config_file=config_file,
        status=status,
        data_dir=data_dir,
        index_dir=index_dir,
        judge_dir=judge_dir,
        run_id=run_id,
        prepared=prepare.outputs["prepared"],
        trained=train.outputs["trained"],
        evaluation=evaluate.outputs["evaluation"],
    )
    return rollout.output


def default_arguments(settings: Settings) -> dict:
    """Data and index where the data helper's ``minielm data`` commands put them; judge from the registry."""
    data_dir = Path(settings.paths.data_dir)
    return {"data_dir": str(data_dir / "synthetic"), "index_dir": str(data_dir / "index"), "judge_dir": ""}


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (one subprocess per task) against the configured services."""
    return run_locally(pipeline_func, NAME, settings, default_arguments(settings), params, "rl")
