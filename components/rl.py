"""KFP components of the RL retraining pipeline: thin wrappers over ``minielm.rl.retraining``
(no ``from __future__ import annotations``: KFP reads the real annotation objects).

Every component reads the platform settings from ``config_file`` (empty: ``$MINIELM_CONFIG`` and
``MINIELM_*`` variables; on a cluster the settings ConfigMap mounted by ``pipelines.platform``).
The prepare step fetches the data, index and judge from their s3:// URIs and passes them on as
artifacts. Downstream steps take the prepare step's
``status`` and do nothing when it is not ``ready``: kfp.local does not evaluate ``dsl.If``
conditions, and the same compiled pipeline must behave alike locally and on a cluster.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from minielm.config import JOBS_IMAGE


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def rl_prepare(
    config_file: str,
    data_uri: str,
    index_uri: str,
    judge_uri: str,
    data: Output[Dataset],
    index: Output[Artifact],
    judge: Output[Model],
    prepared: Output[Dataset],
) -> NamedTuple("PrepareOutputs", [("status", str), ("n_requests", int)]):
    """Fetch the inputs; new feedback windows since the watermark -> training queries, or status nothing_to_do."""
    from collections import namedtuple
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.rl.retraining import prepare_training_set
    from minielm.s3_uris import fetch
    from minielm.storage import ObjectStore

    settings = load_settings(config_file or None)
    fetch(data_uri, Path(data.path), settings.s3)
    fetch(index_uri, Path(index.path), settings.s3)
    Path(judge.path).mkdir(parents=True, exist_ok=True)
    if judge_uri:
        fetch(judge_uri, Path(judge.path), settings.s3)
    judge.metadata.update({"source": judge_uri, "present": bool(judge_uri)})
    summary = prepare_training_set(settings, ObjectStore(settings.s3), Path(data.path), Path(prepared.path))
    prepared.metadata.update({k: v for k, v in summary.items() if k != "windows"})
    return namedtuple("PrepareOutputs", ["status", "n_requests"])(summary["status"], summary["n_requests"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def rl_train(
    config_file: str,
    status: str,
    data: Input[Dataset],
    index: Input[Artifact],
    judge: Input[Model],
    prepared: Input[Dataset],
    trained: Output[Model],
) -> None:
    """GRPO update of the production rewriter (KL to its reference); exports the candidate."""
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.rl.retraining import READY, train_candidate
    from minielm.storage import ObjectStore

    Path(trained.path).mkdir(parents=True, exist_ok=True)
    if status != READY:
        return
    settings = load_settings(config_file or None)
    summary = train_candidate(
        settings,
        ObjectStore(settings.s3),
        Path(data.path),
        Path(index.path),
        judge.path if judge.metadata.get("present") else None,
        Path(prepared.path),
        Path(trained.path),
    )
    trained.metadata.update({k: v for k, v in summary.items() if k != "history"})


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def rl_evaluate(
    config_file: str,
    status: str,
    data: Input[Dataset],
    index: Input[Artifact],
    judge: Input[Model],
    trained: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
) -> bool:
    """Held-out relevant products per query, replay reward and KL; the quality gate."""
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.rl.retraining import READY, evaluate_and_gate
    from minielm.storage import ObjectStore

    Path(evaluation.path).mkdir(parents=True, exist_ok=True)
    if status != READY:
        return False
    settings = load_settings(config_file or None)
    report = evaluate_and_gate(
        settings,
        ObjectStore(settings.s3),
        Path(data.path),
        Path(index.path),
        judge.path if judge.metadata.get("present") else None,
        Path(trained.path),
        Path(evaluation.path),
    )
    for system, values in report["heldout"].items():
        metrics.log_metric(f"{system}_relevant_per_query", values["relevant_per_query"])
    metrics.log_metric("replay_candidate_reward", report["replay"]["candidate_reward"])
    metrics.log_metric("kl_to_reference", report["replay"]["kl_to_reference"])
    return bool(report["gate"]["passed"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def rl_rollout(
    config_file: str,
    status: str,
    data: Input[Dataset],
    index: Input[Artifact],
    run_id: str,
    prepared: Input[Dataset],
    trained: Input[Model],
    evaluation: Input[Artifact],
) -> str:
    """Register the gated candidate, canary it (scored by the independent shopper), promote or roll back;
    advance the watermark."""
    import json
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.rl.retraining import PREPARED_FILE, READY, rollout_candidate
    from minielm.storage import ObjectStore

    prepare_summary = json.loads((Path(prepared.path) / PREPARED_FILE).read_text())
    if status != READY:
        return json.dumps({"status": status, "reason": prepare_summary.get("reason", "")})
    settings = load_settings(config_file or None)
    report = json.loads((Path(evaluation.path) / "evaluation.json").read_text())
    outcome = rollout_candidate(
        settings,
        ObjectStore(settings.s3),
        Path(data.path),
        Path(index.path),
        Path(trained.path),
        report,
        prepare_summary,
        run_id,
        Path(evaluation.path).parent / "rollout",
    )
    return json.dumps(outcome, default=str)
