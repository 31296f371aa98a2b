"""The DeepSpeed training core shared by every trainer (teachers, distillation, RL).

Two levels of API:

* :func:`train` — the generic loop. Give it a model, a ``loss_fn(model, batch) -> Tensor``, a
  validated :class:`~minielm.training.config.TrainingConfig`, an output directory, and data as
  either ``dataset`` + ``collate_fn`` (any indexable sequence; the engine shards it over ranks,
  shuffles it per epoch from ``config.seed`` and batches it) or ``batches(start_micro_step)``
  (a callable returning an iterator of ready micro-batches from that micro-step on). It resumes
  from the latest checkpoint in ``output_dir/checkpoints`` if one exists, so a run killed at any
  point and started again with the same arguments ends at the same step with the same data order.
  At the end rank 0 exports the weights with ``save_pretrained`` into ``output_dir/final``.

* :class:`DeepSpeedTrainer` — the same pieces for a custom loop (e.g. RL: rollouts between
  updates): ``resume()``, ``step(loss_fn, micro_batches)`` (one optimizer step over
  ``gradient_accumulation_steps`` micro-batches), ``save_checkpoint()``, ``export(dir)``.

``loss_fn`` receives the DeepSpeed engine, which is called like the wrapped model
(``model(**inputs)``) and exposes the raw model as ``model.module``; always run the forward pass
through the engine so ZeRO-3 can gather parameters. Batches are moved to the engine's device
(tensors inside dicts, lists and tuples).

Runs on CPU (gloo; single process or ``deepspeed``/``torchrun`` with several ranks) and on CUDA
unchanged. A single process needs no launcher: the process-group variables get defaults.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.training.config import TrainingConfig
from minielm.training.distributed import drop_env, ensure_process_group_env, skip_cpu_shared_memory_comm

log = get_logger(__name__)

LossFn = Callable[[Any, Any], torch.Tensor]
BatchSource = Callable[[int], Iterator[Any]]

CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "final"
TRAIN_LOG = "train_log.jsonl"


def lr_multiplier(config: TrainingConfig) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warmup to 1, then decay to ``min_learning_rate_ratio``."""
    floor = config.min_learning_rate_ratio

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        if config.lr_schedule == "constant":
            return 1.0
        decay_steps = max(1, config.max_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / decay_steps)
        if config.lr_schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def resolve_precision(config: TrainingConfig) -> str:
    """``auto`` means bf16 on a CUDA device that supports it, fp32 anywhere else."""
    if config.precision != "auto":
        return config.precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def deepspeed_config(config: TrainingConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON config equivalent of a TrainingConfig."""
    return {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "train_batch_size": config.micro_batch_size * config.gradient_accumulation_steps * world_size,
        "gradient_clipping": config.max_grad_norm,
        "bf16": {"enabled": resolve_precision(config) == "bf16"},
        "zero_optimization": {"stage": config.zero_stage},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def freeze_below_top_layers(model: torch.nn.Module, top_layers: int) -> dict[str, int]:
    """Freeze the embeddings and every transformer layer below the top ``top_layers`` of a Hugging Face
    decoder or encoder; the final norm and heads outside the base model (a classifier's ``score``) stay
    trainable. A tied LM head shares the embedding matrix, so it is frozen with it."""
    base = getattr(model, "base_model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise InputError(
            f"training.trainable_top_layers: {type(model).__name__} has no transformer layer list to freeze below"
        )
    if top_layers > len(layers):
        raise InputError(f"training.trainable_top_layers is {top_layers}, but the model has only {len(layers)} layers")
    trainable = {id(p) for layer in list(layers)[len(layers) - top_layers :] for p in layer.parameters()}
    trainable |= {id(p) for name, p in base.named_parameters() if name.split(".")[0] in ("norm", "final_layernorm")}
    for parameter in base.parameters():
        if id(parameter) not in trainable:
            parameter.requires_grad_(False)
    counts = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
    }
    log.info("lower layers frozen", top_layers=top_layers, of_layers=len(layers), **counts)
    return counts


def build_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    kwargs = {"lr": config.learning_rate, "betas": config.adam_betas}
    if config.optimizer == "deepspeed_adam":
        from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam

        cls = FusedAdam if torch.cuda.is_available() else DeepSpeedCPUAdam
        return cls(groups, adamw_mode=True, **kwargs)
    fused = config.optimizer == "fused_adamw" and torch.cuda.is_available()
    return torch.optim.AdamW(groups, fused=fused or None, **kwargs)


def move_to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


class ShardedMicroBatches:
    """Deterministic micro-batches over a dataset: reshuffled each epoch, sharded over ranks.

    Micro-step ``m`` always yields the same examples for a given seed and world size, which is
    what lets a resumed run continue exactly where the killed one stopped.
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        collate_fn: Callable[[list[Any]], Any],
        micro_batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
    ) -> None:
        per_rank = len(dataset) // world_size
        if per_rank == 0:
            raise ValueError(f"the dataset has {len(dataset)} examples, fewer than the {world_size} ranks")
        self.dataset, self.collate_fn = dataset, collate_fn
        self.micro_batch_size, self.rank, self.world_size, self.seed = micro_batch_size, rank, world_size, seed
        self.per_rank = per_rank
        self.batches_per_epoch = math.ceil(per_rank / micro_batch_size)

    def _epoch_indices(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        return order[self.rank : self.per_rank * self.world_size : self.world_size]

    def __call__(self, start_micro_step: int) -> Iterator[Any]:
        epoch, offset = divmod(start_micro_step, self.batches_per_epoch)
        while True:
            indices = self._epoch_indices(epoch)
            for position in range(offset, self.batches_per_epoch):
                chunk = indices[position * self.micro_batch_size : (position + 1) * self.micro_batch_size]
                yield self.collate_fn([self.dataset[i] for i in chunk])
            epoch, offset = epoch + 1, 0


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    resumed_from_step: int
    seconds: float
    export_dir: Path | None
    precision: str
    zero_stage: int
    world_size: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def summary(self) -> dict[str, Any]:
        head = self.losses[: max(1, len(self.losses) // 10)]
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return {
            "steps": self.steps,
            "resumed_from_step": self.resumed_from_step,
            "first_loss": round(sum(head) / len(head), 5) if self.losses else None,
            "final_loss": round(sum(tail) / len(tail), 5) if self.losses else None,
            "train_seconds": round(self.seconds, 2),
            "precision": self.precision,
            "zero_stage": self.zero_stage,
            "world_size": self.world_size,
        }


class DeepSpeedTrainer:
    """A model wrapped in a DeepSpeed engine, with checkpoints under ``output_dir/checkpoints``."""

    def __init__(self, model: torch.nn.Module, config: TrainingConfig, output_dir: Path | str) -> None:
        defaulted = ensure_process_group_env()
        if not torch.cuda.is_available() and not config.cpu_shared_memory_comm:
            skip_cpu_shared_memory_comm()
        if config.cpu_threads and not torch.cuda.is_available():
            torch.set_num_threads(config.cpu_threads)
        import deepspeed

        self.config = config
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / CHECKPOINT_DIR
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.rank = int(os.environ["RANK"])
        self.precision = resolve_precision(config)
        if self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if torch.cuda.is_available():
            # Fused optimizers want their parameters on the GPU from the start.
            model.to(torch.device("cuda", int(os.environ["LOCAL_RANK"])))
        if config.trainable_top_layers is not None:
            freeze_below_top_layers(model, config.trainable_top_layers)
        optimizer = build_optimizer(model, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(config, self.world_size)
        )
        # The process group is up; a child process (a kfp.local task) must not inherit its port and try to
        # listen on it. RANK/WORLD_SIZE/LOCAL_RANK stay: ZeRO-3 reads LOCAL_RANK while it runs.
        drop_env([name for name in defaulted if name == "MASTER_PORT"])
        self.device = self.engine.device
        log.info(
            "deepspeed engine ready",
            rank=self.rank,
            world_size=self.world_size,
            device=str(self.device),
            precision=self.precision,
            zero_stage=config.zero_stage,
            parameters=sum(p.numel() for p in model.parameters()),
        )

    @property
    def global_step(self) -> int:
        return int(self.engine.global_steps)

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    @property
    def learning_rate(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def resume(self) -> int:
        """Load the latest checkpoint if there is one; returns the optimizer step it reached."""
        if not (self.checkpoint_dir / "latest").is_file():
            return 0
        path, _ = self.engine.load_checkpoint(str(self.checkpoint_dir))
        if path is None:
            raise RuntimeError(f"could not load the latest checkpoint in {self.checkpoint_dir}")
        log.info("resumed from checkpoint", path=path, step=self.global_step)
        return self.global_step

    def step(self, loss_fn: LossFn, micro_batches: Sequence[Any]) -> float:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; returns the mean loss."""
        if len(micro_batches) != self.config.gradient_accumulation_steps:
            raise ValueError(
                f"expected {self.config.gradient_accumulation_steps} micro-batches, got {len(micro_batches)}"
            )
        self.engine.train()
        total = 0.0
        for batch in micro_batches:
            loss = loss_fn(self.engine, move_to_device(batch, self.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}")
            self.engine.backward(loss)
            self.engine.step()
            total += float(loss.detach())
        return total / len(micro_batches)

    def save_checkpoint(self) -> Path:
        """Checkpoint on every rank (tag ``step-N``), then prune old tags down to ``keep_checkpoints``."""
        tag = f"step-{self.global_step:08d}"
        self.engine.save_checkpoint(str(self.checkpoint_dir), tag=tag)
        if self.rank == 0:
            tags = sorted(p for p in self.checkpoint_dir.glob("step-*") if p.is_dir())
            for stale in tags[: -self.config.keep_checkpoints]:
                shutil.rmtree(stale, ignore_errors=True)
        return self.checkpoint_dir / tag

    def full_state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The whole model's weights on CPU (gathered across ranks under ZeRO-3), floats cast to dtype."""
        params = list(self.module.parameters())
        if self.config.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        else:
            state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}

    def export(self, dest: Path | str, tokenizer: Any = None, dtype: torch.dtype = torch.float32) -> Path | None:
        """``save_pretrained`` the trained weights (and tokenizer) into dest on rank 0; all ranks must call."""
        state = self.full_state_dict(dtype)
        if self.rank != 0:
            return None
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        module = self.module
        module.save_pretrained(dest, state_dict=state)
        # save_pretrained records the dtype of the live (possibly bf16) parameters; the files hold dtype.
        module.config.dtype = dtype
        module.config.save_pretrained(dest)
        if tokenizer is not None:
            tokenizer.save_pretrained(dest)
        log.info("model exported", path=str(dest), step=self.global_step)
        return dest


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    config: TrainingConfig,
    output_dir: Path | str,
    *,
    dataset: Sequence[Any] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    batches: BatchSource | None = None,
    tokenizer: Any = None,
    export: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    description: str = "training",
) -> TrainResult:
    """Train ``model`` to ``config.max_steps`` with DeepSpeed, resuming from the latest checkpoint.

    Exactly one of ``dataset`` (with ``collate_fn``) or ``batches`` gives the data. ``on_step(step,
    loss)`` is called after every optimizer step (on every rank). Returns the loss of every step run
    in this call and where the exported model went (``output_dir/final`` on rank 0).
    """
    if (dataset is None) == (batches is None):
        raise ValueError("pass either dataset (with collate_fn) or batches, not both or neither")
    if dataset is not None and collate_fn is None:
        raise ValueError("a dataset needs a collate_fn that turns a list of examples into a batch")
    started = time.perf_counter()
    trainer = DeepSpeedTrainer(model, config, output_dir)
    if trainer.rank == 0:
        log.info("training config", description=description, **config.model_dump(mode="json"))
    if batches is None:
        batches = ShardedMicroBatches(
            dataset, collate_fn, config.micro_batch_size, trainer.rank, trainer.world_size, config.seed
        )
    start_step = trainer.resume()
    accumulation = config.gradient_accumulation_steps
    stream = batches(start_step * accumulation)
    losses: list[float] = []
    log_path = trainer.output_dir / TRAIN_LOG
    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.max_steps,
        initial=start_step,
        desc=description,
        unit="step",
        disable=not config.progress or trainer.rank != 0,
        dynamic_ncols=True,
    )
    try:
        while trainer.global_step < config.max_steps:
            micro_batches = [next(stream) for _ in range(accumulation)]
            lr = trainer.learning_rate
            loss = trainer.step(loss_fn, micro_batches)
            losses.append(loss)
            step = trainer.global_step
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if trainer.rank == 0:
                _append_log(log_path, {"step": step, "loss": loss, "lr": lr, "ts": time.time()})
                if step % config.log_every == 0 or step == config.max_steps:
                    log.info("train step", description=description, step=step, loss=round(loss, 5), lr=lr)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
                trainer.save_checkpoint()
            if on_step is not None:
                on_step(step, loss)
    finally:
        bar.close()
    if start_step < config.max_steps:
        trainer.save_checkpoint()
    export_dir = trainer.export(trainer.output_dir / EXPORT_DIR, tokenizer) if export else None
    result = TrainResult(
        steps=trainer.global_step,
        losses=losses,
        resumed_from_step=start_step,
        seconds=time.perf_counter() - started,
        export_dir=export_dir,
        precision=trainer.precision,
        zero_stage=config.zero_stage,
        world_size=trainer.world_size,
    )
    if trainer.rank == 0:
        log.info("training finished", description=description, **result.summary())
    return result
