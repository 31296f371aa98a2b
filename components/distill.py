"""KFP components of the training pipeline's data check and distillation: thin wrappers over
``minielm.distill.stages`` (no ``from __future__ import annotations``: KFP reads the real annotation
objects). The teachers are trained by :mod:`components.teachers`.

Every component reads the platform settings from ``config_file`` (empty: ``$MINIELM_CONFIG`` and
``MINIELM_*`` variables; on a cluster the settings ConfigMap mounted by ``pipelines.platform``).
``preset`` names a config preset applied to those settings (``toy``: the budgets of
``minielm.presets`` that run on a laptop in minutes; empty: none).
The image each task runs is set when the pipeline is built (``pipelines.platform.deploy``).
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from minielm.config import JOBS_IMAGE


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def validate_data(
    config_file: str,
    data_uri: str,
    index_uri: str,
    data: Output[Dataset],
    index: Output[Artifact],
    metrics: Output[Metrics],
) -> int:
    """Fetch the ESCI data (and the BM25 index, if any) from S3, fail fast on data that cannot train the
    teachers, and pass both on as the pipeline's artifacts."""
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.distill.stages import validate_training_data
    from minielm.s3_uris import fetch

    settings = load_settings(config_file or None)
    fetch(data_uri, Path(data.path), settings.s3)
    summary = validate_training_data(data.path)
    data.metadata.update({"source": data_uri, **summary})
    Path(index.path).mkdir(parents=True, exist_ok=True)
    if index_uri:
        fetch(index_uri, Path(index.path), settings.s3)
    index.metadata.update({"source": index_uri, "present": bool(index_uri)})
    for name, value in summary.items():
        metrics.log_metric(name, value)
    return int(summary["n_examples"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def label_augmented_pairs(
    config_file: str,
    data: Input[Dataset],
    index: Input[Artifact],
    preset: str,
    teacher_relevance: Input[Model],
    triples: Output[Dataset],
) -> int:
    """Augmented (query, product+, product-) triples labelled by the relevance teacher."""
    from minielm.config import load_settings
    from minielm.distill.stages import TEACHER_EXPORT, label_augmented_pairs
    from minielm.presets import apply_preset

    settings = apply_preset(load_settings(config_file or None), preset)
    summary = label_augmented_pairs(
        data.path,
        index.path if index.metadata.get("present") else None,
        f"{teacher_relevance.path}/{TEACHER_EXPORT}",
        triples.path,
        settings.distill,
        seed=settings.seed,
    )
    triples.metadata.update({k: v for k, v in summary.items() if k != "triples_path"})
    return int(summary["n_triples"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def distill_relevance(
    config_file: str,
    data: Input[Dataset],
    preset: str,
    triples: Input[Dataset],
    teacher_relevance: Input[Model],
    student: Output[Model],
) -> None:
    """Cross-encoder student, Margin-MSE on the teacher margins (export in ``student.path/model``)."""
    from minielm.config import load_settings
    from minielm.distill.stages import TEACHER_EXPORT, TRIPLES_FILE, distill_relevance_student
    from minielm.presets import apply_preset

    settings = apply_preset(load_settings(config_file or None), preset)
    summary = distill_relevance_student(
        data.path,
        f"{triples.path}/{TRIPLES_FILE}",
        student.path,
        settings.distill,
        seed=settings.seed,
        teacher_relevance_dir=f"{teacher_relevance.path}/{TEACHER_EXPORT}",
    )
    student.metadata.update({k: v for k, v in summary.items() if k != "model_dir"})


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def distill_rewriter(
    config_file: str,
    data: Input[Dataset],
    index: Input[Artifact],
    preset: str,
    teacher_rewriter: Input[Model],
    student: Output[Model],
) -> None:
    """Smaller decoder, sequence-level KD + token KL to the teacher (export in ``student.path/model``)."""
    from minielm.config import load_settings
    from minielm.distill.stages import TEACHER_EXPORT, distill_rewriter_student
    from minielm.presets import apply_preset

    settings = apply_preset(load_settings(config_file or None), preset)
    summary = distill_rewriter_student(
        data.path,
        f"{teacher_rewriter.path}/{TEACHER_EXPORT}",
        student.path,
        settings.distill,
        seed=settings.seed,
        index_dir=index.path if index.metadata.get("present") else None,
        eval_config=settings.eval,
    )
    student.metadata.update({k: v for k, v in summary.items() if k not in ("model_dir", "layer_map")})


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def evaluate_students(
    config_file: str,
    data: Input[Dataset],
    index: Input[Artifact],
    teacher_rewriter: Input[Model],
    student_rewriter: Input[Model],
    teacher_relevance: Input[Model],
    student_relevance: Input[Model],
    report: Output[Artifact],
    metrics: Output[Metrics],
    html_report: Output[HTML],
) -> None:
    """Teacher / student / raw / baseline / oracle on the held-out split (JSON and an HTML report);
    the share of the teacher's gain kept."""
    import json
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.distill.stages import MODEL_SUBDIR, TEACHER_EXPORT, evaluate_students
    from minielm.eval_report import write_html_report

    settings = load_settings(config_file or None)
    result = evaluate_students(
        data.path,
        index.path if index.metadata.get("present") else None,
        f"{teacher_rewriter.path}/{TEACHER_EXPORT}",
        f"{student_rewriter.path}/{MODEL_SUBDIR}",
        f"{teacher_relevance.path}/{TEACHER_EXPORT}",
        f"{student_relevance.path}/{MODEL_SUBDIR}",
        settings.eval,
        settings.serving,
        seed=settings.seed,
    )
    print(result["table"])
    Path(report.path).write_text(json.dumps(result, indent=2, default=str))
    write_html_report(result["rewriter"], html_report.path)
    for system, values in result["rewriter"]["systems"].items():
        metrics.log_metric(f"{system}_relevant_per_query", values["relevant_per_query"])
    share = result["rewriter"]["student_keeps_teacher_gain"]
    if share is not None:
        metrics.log_metric("student_keeps_teacher_gain", share)
    k = result["relevance"]["k"]
    for system, values in result["relevance"]["systems"].items():
        metrics.log_metric(f"relevance_{system}_ndcg", values[f"ndcg@{k}"])
        metrics.log_metric(f"relevance_{system}_macro_f1", values["macro_f1"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def quality_gate(config_file: str, report: Input[Artifact], gate: Output[Artifact]) -> bool:
    """Beat raw, no regression vs the production student, relevance student close to its teacher."""
    import json
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.distill.stages import gate_students, production_rewriter_metrics
    from minielm.registry import ModelRegistry
    from minielm.storage import ObjectStore

    settings = load_settings(config_file or None)
    production = production_rewriter_metrics(ModelRegistry(ObjectStore(settings.s3)), settings.models.student_rewriter)
    result = gate_students(json.loads(Path(report.path).read_text()), production, settings.gate, settings.distill)
    Path(gate.path).write_text(json.dumps(result, indent=2))
    return bool(result["passed"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def register_candidates(
    config_file: str,
    run_id: str,
    student_rewriter: Input[Model],
    student_relevance: Input[Model],
    report: Input[Artifact],
    gate: Input[Artifact],
) -> str:
    """Register each student whose gate passed as ``candidate``; returns the outcome as JSON."""
    import json
    from pathlib import Path

    from minielm.config import load_settings
    from minielm.distill.stages import MODEL_SUBDIR, register_students
    from minielm.storage import ObjectStore

    settings = load_settings(config_file or None)
    result = register_students(
        settings,
        ObjectStore(settings.s3),
        f"{student_rewriter.path}/{MODEL_SUBDIR}",
        f"{student_relevance.path}/{MODEL_SUBDIR}",
        json.loads(Path(report.path).read_text()),
        json.loads(Path(gate.path).read_text()),
        stage="candidate",
        extra_metadata={"pipeline": "training", "pipeline_run": run_id},
    )
    return json.dumps(result)
