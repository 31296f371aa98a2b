"""Teacher training as pipeline stages: settings + JSON overrides in, model dir and flat metrics out.

The KFP components in ``components/teachers.py`` call :func:`run_teacher_stage` and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from minielm.config import ConfigError, Settings, format_validation_error
from minielm.config_base import with_overrides
from minielm.teachers.common import TeacherRun
from minielm.teachers.config import (
    RelevanceTeacherConfig,
    RewriterTeacherConfig,
    tiny_relevance_config,
    tiny_rewriter_config,
)

Role = Literal["rewriter", "relevance"]


def teacher_config(
    settings: Settings, role: Role, toy: bool = False, overrides: dict[str, Any] | str | None = None
) -> RewriterTeacherConfig | RelevanceTeacherConfig:
    """``settings.teachers.<role>`` (or the toy preset), with overrides merged in and validated."""
    if role not in ("rewriter", "relevance"):
        raise ConfigError(f"role: expected 'rewriter' or 'relevance', got {role!r}")
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as error:
            raise ConfigError(f"teacher config overrides: not valid JSON ({error})") from None
    section = getattr(settings.teachers, role)
    base = (
        (tiny_rewriter_config(tiny=section.tiny) if role == "rewriter" else tiny_relevance_config(tiny=section.tiny))
        if toy
        else section
    )
    try:
        return with_overrides(base, overrides or {})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error).replace("invalid configuration", f"teachers.{role}")) from None


def numeric_metrics(run: TeacherRun) -> dict[str, float]:
    """The run's metrics that are numbers (what a KFP Metrics artifact can hold)."""
    return {k: float(v) for k, v in run.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_teacher_stage(
    settings: Settings,
    role: Role,
    data_dir: Path | str,
    output_dir: Path | str,
    toy: bool = False,
    overrides: dict[str, Any] | str | None = None,
    index_dir: Path | str | None = None,
) -> TeacherRun:
    """Train one teacher into ``output_dir`` (export in ``output_dir/final``); resumable."""
    config = teacher_config(settings, role, toy, overrides)
    if role == "rewriter":
        from minielm.teachers.rewriter import train_rewriter

        return train_rewriter(
            data_dir,
            output_dir,
            config,
            cache_dir=settings.teachers.models_cache_dir,
            index_dir=index_dir or None,
            top_k=settings.eval.top_k,
            substitute_is_relevant=settings.eval.substitute_is_relevant,
        )
    from minielm.teachers.relevance import train_relevance_teacher

    return train_relevance_teacher(
        data_dir, output_dir, config, cache_dir=settings.teachers.models_cache_dir, top_k=settings.eval.top_k
    )
