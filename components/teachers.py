"""KFP components that fine-tune the teachers (thin: all logic is in ``minielm.teachers.stages``).

No ``from __future__ import annotations``: KFP reads the real annotation objects. The ``data``
artifact is a directory in the ESCI layout; the ``teacher`` model artifact is the run directory
(resumable checkpoints, ``final/`` = the exported model). ``overrides`` is JSON merged into
``settings.teachers.<role>``; ``preset`` names a config preset applied to the settings first
(``toy``: the tiny backbone and its budget; empty: none).
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
    preset: str = "",
) -> float:
    """Rewriter teacher through the DeepSpeed core; returns the relevant products per query it reaches."""
    from minielm.config import load_settings
    from minielm.presets import apply_preset
    from minielm.teachers.stages import numeric_metrics, run_teacher_stage

    index_dir = index.path if index.metadata.get("present") else None
    settings = apply_preset(load_settings(config_file or None), preset)
    run = run_teacher_stage(settings, "rewriter", data.path, teacher.path, False, overrides, index_dir)
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
    preset: str = "",
) -> float:
    """LM relevance teacher (4-way ESCI head) through the DeepSpeed core; returns its macro-F1."""
    from minielm.config import load_settings
    from minielm.presets import apply_preset
    from minielm.teachers.stages import numeric_metrics, run_teacher_stage

    settings = apply_preset(load_settings(config_file or None), preset)
    run = run_teacher_stage(settings, "relevance", data.path, teacher.path, False, overrides)
    teacher.metadata.update({"role": "teacher-relevance", "export": "final", **run.metadata})
    for name, value in numeric_metrics(run).items():
        metrics.log_metric(name, value)
    return float(run.metrics["macro_f1"])
