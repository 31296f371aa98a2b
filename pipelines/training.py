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
from minielm.config import PipelinesConfig, Settings
from pipelines.local_run import run_locally
from pipelines.platform import deploy

NAME = "training"
# Parameters that name data: s3:// URIs on a cluster (checked before a run is submitted).
URI_PARAMETERS = ("data_uri", "index_uri")


def build_pipeline(cluster: PipelinesConfig):
    """The pipeline, its task pods configured from ``cluster`` (image, settings, secrets, resources)."""

    @dsl.pipeline(
        name="minielm-training",
        description="Fine-tune the teachers, distil the students (sequence KD + token KL; Margin-MSE on "
        "teacher-labelled augmented triples), evaluate, gate and register candidates.",
    )
    def training(
        data_uri: str,
        index_uri: str = "",
        config_file: str = "",
        preset: str = "",
        rewriter_teacher_overrides: str = "",
        relevance_teacher_overrides: str = "",
        run_id: str = "",
    ) -> str:
        checked = deploy(validate_data(config_file=config_file, data_uri=data_uri, index_uri=index_uri), cluster)
        data, index = checked.outputs["data"], checked.outputs["index"]
        teacher_rewriter = fine_tune_rewriter_teacher(
            data=data, index=index, config_file=config_file, overrides=rewriter_teacher_overrides, preset=preset
        )
        deploy(teacher_rewriter, cluster, training=True)
        teacher_relevance = fine_tune_relevance_teacher(
            data=data, config_file=config_file, overrides=relevance_teacher_overrides, preset=preset
        )
        deploy(teacher_relevance, cluster, training=True)
        labelled = label_augmented_pairs(
            config_file=config_file,
            data=data,
            index=index,
            preset=preset,
            teacher_relevance=teacher_relevance.outputs["teacher"],
        )
        deploy(labelled, cluster, training=True)
        relevance_student = distill_relevance(
            config_file=config_file,
            data=data,
            preset=preset,
            triples=labelled.outputs["triples"],
            teacher_relevance=teacher_relevance.outputs["teacher"],
        )
        deploy(relevance_student, cluster, training=True)
        rewriter_student = distill_rewriter(
            config_file=config_file,
            data=data,
            index=index,
            preset=preset,
            teacher_rewriter=teacher_rewriter.outputs["teacher"],
        )
        deploy(rewriter_student, cluster, training=True)
        evaluation = evaluate_students(
            config_file=config_file,
            data=data,
            index=index,
            teacher_rewriter=teacher_rewriter.outputs["teacher"],
            student_rewriter=rewriter_student.outputs["student"],
            teacher_relevance=teacher_relevance.outputs["teacher"],
            student_relevance=relevance_student.outputs["student"],
        )
        deploy(evaluation, cluster, training=True)
        gate = deploy(quality_gate(config_file=config_file, report=evaluation.outputs["report"]), cluster)
        gate.set_caching_options(False)
        register = register_candidates(
            config_file=config_file,
            run_id=run_id,
            student_rewriter=rewriter_student.outputs["student"],
            student_relevance=relevance_student.outputs["student"],
            report=evaluation.outputs["report"],
            gate=gate.outputs["gate"],
        )
        deploy(register, cluster).set_caching_options(False)
        return register.output

    return training


def default_arguments(settings: Settings) -> dict:
    """Data and index where ``minielm data`` puts them locally (a cluster run names s3:// URIs instead)."""
    data_dir = Path(settings.paths.data_dir)
    return {"data_uri": str(data_dir / "synthetic"), "index_uri": str(data_dir / "index")}


def cluster_arguments(settings: Settings) -> dict:
    """The data a cluster run reads unless it names its own: ``pipelines.data_uri`` and ``pipelines.index_uri``."""
    uris = {"data_uri": settings.pipelines.data_uri, "index_uri": settings.pipelines.index_uri}
    return {name: uri for name, uri in uris.items() if uri}


def run_local(settings: Settings, **params) -> dict:
    """Run the pipeline with kfp.local (a subprocess per task; the ``toy`` preset unless ``preset`` says otherwise)."""
    params = {"preset": "toy", **params}
    return run_locally(
        build_pipeline(settings.pipelines), NAME, settings, default_arguments(settings), params, "training"
    )
