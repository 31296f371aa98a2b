"""What the demo's steps hand to each other: one typed field per step output.

Each field names the step that produces it; a step asks for what it needs with
:meth:`DemoArtifacts.require`, which fails with the missing artifact's name and its producer
when an earlier step did not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from minielm.errors import ServiceError


class MissingArtifactError(ServiceError):
    """A demo step needs an artifact that no earlier step produced."""


def _by(step: str, default: Any = None) -> Any:
    return field(default=default, metadata={"step": step})


@dataclass
class DemoArtifacts:
    # Embedded services
    s3_round_trip: dict[str, Any] | None = _by("S3 round trip")
    kafka_round_trip: dict[str, int] | None = _by("Kafka round trip")
    # Data
    dataset_dir: Path | None = _by("data")
    index_dir: Path | None = _by("data")
    eval_raw_oracle: dict[str, Any] | None = _by("data")
    # Teachers
    teacher_rewriter_dir: Path | None = _by("teachers")
    teacher_rewriter_version: str | None = _by("teachers")
    teacher_relevance_dir: Path | None = _by("teachers")
    teacher_relevance_version: str | None = _by("teachers")
    teacher_metrics: dict[str, Any] | None = _by("teachers")
    # Students
    student_rewriter_dir: Path | None = _by("distillation")
    student_relevance_dir: Path | None = _by("distillation")
    student_rewriter_version: str | None = _by("distillation")
    student_relevance_version: str | None = _by("distillation")
    distill_report: dict[str, Any] | None = _by("distillation")
    distill_gate: dict[str, Any] | None = _by("distillation")
    # Serving (the server keeps running for the feedback step; ``serving_stop`` stops it)
    feast_repo_path: Path | None = _by("serving")
    serving_url: str | None = _by("serving")
    serving_stop: Callable[[], None] | None = _by("serving")
    serving_models: dict[str, str] | None = _by("serving")
    serving_demo: dict[str, Any] | None = _by("serving")
    # Feedback
    feedback_window_keys: list[str] | None = _by("feedback")
    feedback_summary: dict[str, Any] | None = _by("feedback")
    # RL retraining and drift
    rl_report: dict[str, Any] | None = _by("RL retraining")
    drift_summary: dict[str, Any] | None = _by("drift")

    def require(self, *names: str, step: str) -> None:
        """Fail naming every artifact in ``names`` that is missing and the step that produces it."""
        producers = {f.name: f.metadata["step"] for f in fields(self)}
        unknown = [name for name in names if name not in producers]
        if unknown:
            raise AttributeError(f"DemoArtifacts has no field {', '.join(unknown)}")
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            needs = ", ".join(f"{name} (from the {producers[name]} step)" for name in missing)
            raise MissingArtifactError(f"the {step} step needs {needs}: run that step first")

    def produced(self) -> dict[str, Any]:
        """The artifacts produced so far, without the server's stop handle."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None and f.name != "serving_stop"
        }
