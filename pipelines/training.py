"""The training pipeline: data -> teachers -> augmented labels -> students -> evaluate -> gate -> register.

validate data -> fine-tune the rewriter teacher and the relevance teacher (DeepSpeed) -> the relevance
teacher labels augmented (query, product+, product-) triples -> distil the cross-encoder student
(Margin-MSE) and the rewriter student (sequence KD + token KL) -> evaluate both against their
teachers, raw and oracle -> quality gate -> register each student whose gate passed as ``candidate``.
The pipeline's output is the registration outcome as JSON.

Caching: the training and labelling tasks are pure functions of their inputs and may be cached on a
cluster; the gate and the registration read the registry's current state and never are.
"""

from pathlib import Path

from kfp import dsl

from components.distill import (
    distill_relevance,
    distill_rewriter,
    evaluate_students,
    label_augmented_pairs,
    quality_gate,
    register_candidates,
    validate_data,
)
from components.teachers import fine_tune_relevance_teacher, fine_tune_rewriter_teacher
from minielm.config import Settings
from pipelines.local_run import run_locally

NAME = "training"


@dsl.pipeline(
    name="minielm-training",
    description="Fine-tune the teachers, distil the students (sequence KD + token KL; Margin-MSE on "
    "teacher-labelled augmented triples), evaluate, gate and register candidates.",
)
def pipeline_func(
    data_dir: str,
    index_dir: str = "",
    config_file: str = "",
    toy: bool = True,
    rewriter_teacher_overrides: str = "",
    relevance_teacher_overrides: str = "",
    run_id: str = "",
) -> str:
    checked = validate_data(config_file=config_file, data_dir=data_dir)
    data = checked.outputs["data"]
    teacher_rewriter = fine_tune_rewriter_teacher(
        data=data, config_file=config_file, overrides=rewriter_teacher_overrides, toy=toy, index_dir=index_dir
    )
    teacher_relevance = fine_tune_relevance_teacher(
        data=data, config_file=config_file, overrides=relevance_teacher_overrides, toy=toy
    )
    labelled = label_augmented_pairs(
        config_file=config_file,
        data=data,
        index_dir=index_dir,
        toy=toy,
        teacher_relevance=teacher_relevance.outputs["teacher"],
    )
    relevance_student = distill_relevance(
        config_file=config_file, data=data, toy=toy, triples=labelled.outputs["triples"]
    )
    rewriter_student = distill_rewriter(
        config_file=config_file,
        data=data,
        index_dir=index_dir,
        toy=toy,
        teacher_rewriter=teacher_rewriter.outputs["teacher"],
    )
    evaluation = evaluate_students(
        config_file=config_file,
        data=data,
        index_dir=index_dir,
        teacher_rewriter=teacher_rewriter.outputs["teacher"],
        student_rewriter=rewriter_student.outputs["student"],
        teacher_relevance=teacher_relevance.outputs["teacher"],
        student_relevance=relevance_student.outputs["student"],
    )
    gate = quality_gate(config_file=config_file, report=evaluation.outputs["report"])
    gate.set_caching_options(False)
    register = register_candidates(
        config_file=config_file,
        run_id=run_id,
        student_rewriter=rewriter_student.outputs["student"],
        student_relevance=relevance_student.outputs["student"],
        report=evaluation.outputs["report"],
        gate=gate.outputs["gate"],
    )
    register.set_caching_options(False)
    return register.output


def default_arguments(settings: Settings) -> dict:
    """Data and index where ``minielm data`` puts them; toy-scale budgets; teacher settings as configured."""
    data_dir = Path(settings.paths.data_dir)
    return {"data_dir": str(data_dir / "synthetic"), "index_dir": str(data_dir / "index"), "toy": True}


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (one subprocess per task) against the configured services."""
    return run_locally(pipeline_func, NAME, settings, default_arguments(settings), params, "training")
