"""The one config object of the DeepSpeed training core, validated before any work starts.

Trainers built on :mod:`minielm.training.engine` (teachers, distillation, RL) embed a
:class:`TrainingConfig` in their own config and pass it to the engine unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from minielm.config_base import StrictConfig


class TrainingConfig(StrictConfig):
    """How to run an optimisation: steps, batch, optimiser, schedule, precision, ZeRO, checkpoints."""

    max_steps: int = Field(100, ge=1, description="optimizer steps (each = grad_accum micro-batches per rank)")
    micro_batch_size: int = Field(8, ge=1, description="examples per rank per forward/backward")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    learning_rate: float = Field(3e-4, gt=0, le=1.0, description="peak learning rate")
    min_learning_rate_ratio: float = Field(0.1, ge=0, le=1, description="final LR as a fraction of the peak")
    warmup_steps: int = Field(10, ge=0, description="optimizer steps of linear warm-up")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="learning-rate decay after warm-up"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    adam_betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    max_grad_norm: float = Field(1.0, ge=0, description="0 disables clipping")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 on CUDA devices that support it, fp32 otherwise"
    )
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage (0: plain data parallel)")
    optimizer: Literal["torch_adamw", "fused_adamw", "deepspeed_adam"] = Field(
        "torch_adamw", description="torch_adamw avoids DeepSpeed's JIT-built Adam ops (slow to build on CPU)"
    )
    checkpoint_every: int = Field(50, ge=0, description="optimizer steps between checkpoints; 0 = only at the end")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (the oldest are deleted)")
    log_every: int = Field(10, ge=1, description="optimizer steps between metric log lines")
    seed: int = Field(0, description="seed of data order and initialisation")
    progress: bool = Field(True, description="show a progress bar")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU; 1 avoids thread thrashing on busy shared hosts"
    )
    trainable_top_layers: int | None = Field(
        None,
        ge=1,
        description="train only the top N transformer layers, the final norm and any task head (embeddings and "
        "lower layers frozen: backward stops at layer N, which makes fine-tuning a pretrained LM affordable on CPU); "
        "None trains every parameter",
    )
    cpu_shared_memory_comm: bool = Field(
        False, description="build DeepSpeed's shm all-reduce op on CPU (a ~30 s JIT build; only helps multi-rank)"
    )

    @model_validator(mode="after")
    def _warmup_within_run(self) -> TrainingConfig:
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must not exceed max_steps ({self.max_steps})")
        return self
