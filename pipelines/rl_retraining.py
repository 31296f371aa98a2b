"""The recurring RL retraining pipeline: feedback windows -> GRPO -> evaluate -> gate -> canary.

prepare (windows since the watermark; "nothing to do" below rl.min_new_requests) -> train (GRPO from
the production rewriter) -> evaluate (held-out relevant@k, replay reward, KL; quality gate) ->
rollout (register candidate, canary, promote or roll back, advance the watermark). The pipeline's
output is the rollout summary as JSON.
"""

import json
import os
import time
from pathlib import Path

from kfp import dsl

from components.rl import rl_evaluate, rl_prepare, rl_rollout, rl_train
from minielm.config import Settings

NAME = "rl_retraining"


@dsl.pipeline(name="minielm-rl-retraining",
              description="Online RL (GRPO) of the student rewriter from feedback windows and the relevance judge, "
                          "gated and rolled out as a canary.")
def pipeline_func(data_dir: str, index_dir: str, config_file: str = "", judge_dir: str = "",
                  run_id: str = "") -> str:
    prepare = rl_prepare(config_file=config_file, data_dir=data_dir)
    status = prepare.outputs["status"]
    train = rl_train(config_file=config_file, status=status, data_dir=data_dir, index_dir=index_dir,
                     judge_dir=judge_dir, prepared=prepare.outputs["prepared"])
    evaluate = rl_evaluate(config_file=config_file, status=status, data_dir=data_dir, index_dir=index_dir,
                           judge_dir=judge_dir, trained=train.outputs["trained"])
    rollout = rl_rollout(config_file=config_file, status=status, data_dir=data_dir, index_dir=index_dir,
                         judge_dir=judge_dir, run_id=run_id, prepared=prepare.outputs["prepared"],
                         trained=train.outputs["trained"], evaluation=evaluate.outputs["evaluation"])
    return rollout.output


def default_arguments(settings: Settings) -> dict:
    """Data and index where the data helper's ``minielm data`` commands put them; judge from the registry."""
    data_dir = Path(settings.paths.data_dir)
    return {"data_dir": str(data_dir / "synthetic"), "index_dir": str(data_dir / "index"), "judge_dir": ""}


def write_settings_file(settings: Settings, path: Path) -> Path:
    """The live settings (secrets included) for the local task subprocesses, readable by the owner only."""
    data = settings.model_dump(mode="json")
    for field in ("access_key_id", "secret_access_key"):
        secret = getattr(settings.s3, field)
        data["s3"][field] = secret.get_secret_value() if secret is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(data))
    return path


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (one subprocess per task) against the configured services."""
    from kfp import local

    run_id = params.pop("run_id", None) or time.strftime("rl-%Y%m%d-%H%M%S", time.gmtime())
    root = Path(settings.paths.runs_dir).resolve() / "kfp" / NAME
    config_file = params.pop("config_file", None) or str(write_settings_file(settings, root / run_id / "settings.json"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    arguments = {**default_arguments(settings), **params}
    try:
        task = pipeline_func(config_file=config_file, run_id=run_id, **arguments)
    finally:
        if config_file.startswith(str(root)):
            os.remove(config_file)
    return json.loads(task.output)
