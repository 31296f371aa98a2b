"""KFP components that fine-tune the teachers (thin: all logic is in ``minielm.teachers.stages``).

No ``from __future__ import annotations``: KFP reads the real annotation objects. The ``data``
artifact is a directory in the ESCI layout; the ``teacher`` model artifact is the run directory
(resumable checkpoints, ``final/`` = the exported model). ``overrides`` is JSON merged into
``settings.teachers.<role>``; ``toy`` selects the tiny backbone and its budget.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from minielm.config import JOBS_IMAGE


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def fine_tune_rewriter_teacher(
    data: Input[Dataset],
    index: Input[Artifact],
    teacher: Output[Model],
    metrics: Output[Metrics],
    config_file: str = "",
    overrides: str = "",
    toy: bool = False,
) -> float:
    """Rewriter teacher through the DeepSpeed core; returns the relevant products per query it reaches."""
    from minielm.config import load_settings
    from minielm.teachers.stages import numeric_metrics, run_teacher_stage

    index_dir = index.path if index.metadata.get("present") else None
    run = run_teacher_stage(
        load_settings(config_file or None), "rewriter", data.path, teacher.path, toy, overrides, index_dir
    )
    teacher.metadata.update({"role": "teacher-rewriter", "export": "final", **run.metadata})
    for name, value in numeric_metrics(run).items():
        metrics.log_metric(name, value)
    return float(run.metrics["teacher_relevant_per_query"])


@dsl.component(install_kfp_package=False, base_image=JOBS_IMAGE)
def fine_tune_relevance_teacher(
    data: Input[Dataset],
    teacher: Output[Model],
    metrics: Output[Metrics],
    config_file: str = "",
    overrides: str = "",
    toy: bool = False,
) -> float:
    """LM relevance teacher (4-way ESCI head) through the DeepSpeed core; returns its macro-F1."""
    from minielm.config import load_settings
    from minielm.teachers.stages import numeric_metrics, run_teacher_stage

    run = run_teacher_stage(load_settings(config_file or None), "relevance", data.path, teacher.path, toy, overrides)
    teacher.metadata.update({"role": "teacher-relevance", "export": "final", **run.metadata})
    for name, value in numeric_metrics(run).items():
        metrics.log_metric(name, value)
    return float(run.metrics["macro_f1"])
