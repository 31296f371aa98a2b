"""Both students train through the platform's DeepSpeed core (:mod:`minielm.training.engine`).

Each student supplies ``loss_fn(engine, batch)`` and a deterministic ``batches(start_micro_step)``;
this module turns the distillation settings into a validated ``TrainingConfig`` and runs the
engine. Checkpoints go under ``work_dir/checkpoints`` while training (a killed run resumes there)
and are removed once the run has finished and the caller has saved the student.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from minielm.training.config import TrainingConfig
from minielm.training.engine import CHECKPOINT_DIR, TrainResult, train


def training_config(
    steps: int, micro_batch_size: int, learning_rate: float, zero_stage: int, seed: int
) -> TrainingConfig:
    return TrainingConfig(
        max_steps=steps,
        micro_batch_size=micro_batch_size,
        learning_rate=learning_rate,
        warmup_steps=max(1, steps // 10),
        weight_decay=0.01,
        zero_stage=zero_stage,
        precision="auto",
        checkpoint_every=max(50, steps // 4),
        seed=seed,
        log_every=20,
    )


def run_engine(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Callable[[int], Iterator[Any]],
    config: TrainingConfig,
    work_dir: Path,
    description: str,
) -> TrainResult:
    """Train to ``config.max_steps`` (resuming from ``work_dir`` if a checkpoint is there)."""
    return train(model, loss_fn, config, work_dir, batches=batches, export=False, description=description)


def remove_checkpoints(work_dir: Path) -> None:
    shutil.rmtree(Path(work_dir) / CHECKPOINT_DIR, ignore_errors=True)
