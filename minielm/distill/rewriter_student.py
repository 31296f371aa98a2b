"""Distil the rewriter teacher into a smaller decoder that production serves.

The student keeps the teacher's architecture family and tokenizer but has fewer layers (and
optionally narrower ones). It starts from the teacher's weights: student layer i copies teacher
layer ``layer_map[i]`` (evenly spaced, first and last kept); a narrower matrix takes the teacher
matrix's leading block, which for whole attention heads and MLP channels is a coherent sub-network.

Training mixes two signals through the DeepSpeed core:
  - sequence-level KD: cross-entropy on the teacher's own (greedy) rewrites of unlabelled queries;
  - token-level KL: at every answer position, KL to the teacher's next-token distribution at temperature T.
``loss = seq_kd_weight * CE + (1 - seq_kd_weight) * T^2 * KL``.

A teacher with a front end (a cascade, :mod:`minielm.models.rewriter`) passes it on: the student reads
the same front-end rewrites the teacher reads, and learns the teacher's served rewrites of them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from minielm.config import DistillConfig
from minielm.distill.losses import rewriter_distill_loss
from minielm.distill.training import remove_checkpoints, run_engine, training_config
from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.models.output_vocabulary import domain_token_ids
from minielm.models.prompts import format_rewrite_prompt
from minielm.models.rewriter import CausalRewriter, collate_rewrite_examples, encode_rewrite_example

log = get_logger(__name__)

_LAYER = re.compile(r"\.layers\.(\d+)\.")
PROBE_TEXTS = (format_rewrite_prompt("wireles hedphones noise cancel"), " 7qt blk instant pot bed side lamp")


class DistillError(InputError):
    """Distillation cannot start: incompatible teacher/student or unusable data."""


class TokenizerMismatch(DistillError):
    """The student's tokenizer is not the teacher's, so token-level KL would compare different tokens."""


def check_tokenizers_match(teacher: PreTrainedTokenizerBase, student: PreTrainedTokenizerBase) -> None:
    """Same vocabulary (token -> id), same special tokens and the same ids on probe texts, else fail."""
    t_vocab, s_vocab = teacher.get_vocab(), student.get_vocab()
    if t_vocab != s_vocab:
        only_t = sorted(set(t_vocab) - set(s_vocab))[:3]
        only_s = sorted(set(s_vocab) - set(t_vocab))[:3]
        moved = sorted(t for t in set(t_vocab) & set(s_vocab) if t_vocab[t] != s_vocab[t])[:3]
        raise TokenizerMismatch(
            f"the student's tokenizer does not match the teacher's: vocab sizes {len(t_vocab)} vs {len(s_vocab)}; "
            f"only in teacher {only_t}, only in student {only_s}, different ids for {moved}. "
            "The student must share the teacher's tokenizer."
        )
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(teacher, name) != getattr(student, name):
            raise TokenizerMismatch(
                f"the student's tokenizer has {name}={getattr(student, name)} but the teacher's "
                f"has {getattr(teacher, name)}"
            )
    for text in PROBE_TEXTS:
        if teacher(text, add_special_tokens=False)["input_ids"] != student(text, add_special_tokens=False)["input_ids"]:
            raise TokenizerMismatch(f"the tokenizers split {text!r} differently (same vocabulary, different rules)")


def check_teacher_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """The teacher's output layer must cover every id its tokenizer can produce."""
    vocab = model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise TokenizerMismatch(
            f"the teacher checkpoint predicts {vocab} tokens but its tokenizer has {len(tokenizer)}: "
            "the checkpoint does not belong to this tokenizer"
        )


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers for the student, keeping the first and the last."""
    if not 1 <= student_layers <= teacher_layers:
        raise DistillError(
            f"distill.rewriter.num_layers must be between 1 and the teacher's {teacher_layers} "
            f"layers, got {student_layers}"
        )
    if student_layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def student_config(teacher: PretrainedConfig, config: DistillConfig) -> PretrainedConfig:
    """The teacher's config with fewer layers and, if asked, a narrower width (head size kept)."""
    shape = copy.deepcopy(teacher)
    heads = teacher.num_attention_heads
    head_dim = getattr(teacher, "head_dim", None) or teacher.hidden_size // heads
    hidden = config.rewriter.hidden_size or teacher.hidden_size
    if hidden > teacher.hidden_size:
        raise DistillError(
            f"distill.rewriter.hidden_size ({hidden}) must not exceed the teacher's "
            f"{teacher.hidden_size}: the student is smaller"
        )
    n_heads = config.rewriter.num_attention_heads or max(1, hidden // head_dim)
    kv_heads = config.rewriter.num_key_value_heads or max(
        1, min(n_heads, getattr(teacher, "num_key_value_heads", heads) * n_heads // heads)
    )
    if hidden % n_heads or n_heads % kv_heads:
        raise DistillError(
            f"student shape: hidden_size {hidden} must be a multiple of num_attention_heads {n_heads}, "
            f"which must be a multiple of num_key_value_heads {kv_heads}"
        )
    shape.num_hidden_layers = config.rewriter.num_layers
    shape.hidden_size = hidden
    shape.num_attention_heads = n_heads
    shape.num_key_value_heads = kv_heads
    shape.head_dim = hidden // n_heads
    shape.intermediate_size = config.rewriter.intermediate_size or (
        teacher.intermediate_size * hidden // teacher.hidden_size
    )
    layer_types = getattr(teacher, "layer_types", None)
    if layer_types:
        shape.layer_types = list(layer_types)[: config.rewriter.num_layers]
    layer_map(teacher.num_hidden_layers, config.rewriter.num_layers)
    return shape


def init_from_teacher(student: PreTrainedModel, teacher: PreTrainedModel, mapping: Sequence[int]) -> dict[str, int]:
    """Copy teacher weights into the student where shapes allow (whole or leading block)."""
    teacher_state = teacher.state_dict()
    counts = {"copied": 0, "sliced": 0, "fresh": 0}
    with torch.no_grad():
        for name, param in student.state_dict().items():
            source = _LAYER.sub(lambda m: f".layers.{mapping[int(m.group(1))]}.", name)
            weight = teacher_state.get(source)
            if weight is None or weight.ndim != param.ndim or any(s > t for s, t in zip(param.shape, weight.shape)):
                counts["fresh"] += 1
                continue
            block = weight[tuple(slice(0, s) for s in param.shape)]
            param.copy_(block)
            counts["copied" if block.shape == weight.shape else "sliced"] += 1
    return counts


def build_student(teacher: PreTrainedModel, config: DistillConfig) -> tuple[PreTrainedModel, dict[str, Any]]:
    shape = student_config(teacher.config, config)
    student = AutoModelForCausalLM.from_config(shape, dtype=torch.float32)
    mapping = layer_map(teacher.config.num_hidden_layers, shape.num_hidden_layers)
    counts = init_from_teacher(student, teacher, mapping)
    if getattr(shape, "tie_word_embeddings", False):
        student.tie_weights()
    info = {
        "layer_map": mapping,
        "init": counts,
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "student_shape": {
            "layers": shape.num_hidden_layers,
            "hidden_size": shape.hidden_size,
            "heads": shape.num_attention_heads,
            "kv_heads": shape.num_key_value_heads,
            "intermediate_size": shape.intermediate_size,
        },
    }
    log.info("student rewriter built", **info)
    return student, info


@dataclass
class RewriterDistillResult:
    student: CausalRewriter
    losses: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    n_queries: int = 0
    build: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)


def teacher_targets(teacher: CausalRewriter, queries: Sequence[str]) -> list[str]:
    """The teacher's served rewrite of each query, batch by batch behind a progress bar: on CPU a
    SmolLM2 teacher takes minutes for a thousand queries."""
    size = teacher.batch_size
    targets: list[str] = []
    for start in tqdm(
        range(0, len(queries), size), desc="teacher rewrites", unit="batch", disable=len(queries) <= size
    ):
        targets += [r[0] for r in teacher.rewrite(queries[start : start + size])]
    return targets


def distill_rewriter(
    teacher: CausalRewriter,
    queries: Sequence[str],
    config: DistillConfig,
    work_dir: Path,
    student_tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    steps: int | None = None,
    max_prompt_tokens: int = 64,
    vocabulary_texts: Sequence[str] = (),
) -> RewriterDistillResult:
    """Teacher rewrites the unlabelled queries, then the student learns them (CE) and the teacher's
    token distributions (KL). All checks run before the teacher generates anything. With
    ``config.rewriter.output_vocabulary == "domain"`` the student writes only the tokens of the queries, the
    teacher's rewrites and ``vocabulary_texts`` (the catalog titles): see :mod:`minielm.models.output_vocabulary`."""
    tokenizer = teacher.tokenizer
    if student_tokenizer is not None:
        check_tokenizers_match(tokenizer, student_tokenizer)
    check_teacher_checkpoint(teacher.model, tokenizer)
    queries = list(dict.fromkeys(q.strip() for q in queries if isinstance(q, str) and q.strip()))
    if not queries:
        raise DistillError("no unlabelled queries to distil on: the query list is empty")
    queries = queries[: config.rewriter.kd_queries]
    student_config(teacher.model.config, config)
    steps = steps or config.rewriter.steps

    teacher.model.eval()
    targets = teacher_targets(teacher, queries)
    inputs = teacher.lm_inputs(queries)
    encoded = [
        encode_rewrite_example(tokenizer, q, r, max_prompt_tokens, config.rewriter.max_new_tokens)
        for q, r in zip(inputs, targets)
    ]
    torch.manual_seed(seed)
    model, build = build_student(teacher.model, config)
    pad = tokenizer.pad_token_id
    size = config.rewriter.batch_size

    def batches(start: int) -> Iterator[dict[str, torch.Tensor]]:
        micro_step = start
        while True:
            rng = np.random.default_rng([seed, micro_step])
            picked = rng.integers(0, len(encoded), size=min(size, len(encoded)))
            yield collate_rewrite_examples([encoded[i] for i in picked], pad)
            micro_step += 1

    parts: list[dict[str, float]] = []

    def loss_fn(engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        student_logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with torch.no_grad():
            teacher_logits = teacher.model(
                input_ids=batch["input_ids"].to(teacher.model.device),
                attention_mask=batch["attention_mask"].to(teacher.model.device),
            ).logits
        loss, record = rewriter_distill_loss(
            student_logits.float(),
            teacher_logits.float().to(student_logits.device),
            batch["labels"],
            config.rewriter.seq_kd_weight,
            config.rewriter.kl_temperature,
        )
        parts.append(record)
        return loss

    engine_config = training_config(steps, size, config.rewriter.learning_rate, config.zero_stage, seed)
    if config.rewriter.freeze_embeddings:
        engine_config = engine_config.model_copy(update={"trainable_top_layers": model.config.num_hidden_layers})
    result = run_engine(model, loss_fn, batches, engine_config, Path(work_dir), "distill rewriter")
    remove_checkpoints(Path(work_dir))
    model.eval()
    output_token_ids = None
    if config.rewriter.output_vocabulary == "domain":
        output_token_ids = domain_token_ids(tokenizer, [*queries, *targets, *vocabulary_texts])
    build["output_vocabulary_tokens"] = len(output_token_ids) if output_token_ids else None
    student = CausalRewriter(
        model,
        tokenizer,
        max_new_tokens=teacher.max_new_tokens,
        batch_size=teacher.batch_size,
        guard=teacher.guard,
        front_end=teacher.front_end,
        output_token_ids=output_token_ids,
    )
    log.info(
        "rewriter student distilled",
        steps=result.steps,
        queries=len(queries),
        output_vocabulary=len(output_token_ids) if output_token_ids else "full",
        seconds=round(result.seconds, 1),
        first_loss=round(result.losses[0], 4) if result.losses else None,
        last_loss=round(result.losses[-1], 4) if result.losses else None,
    )
    return RewriterDistillResult(
        student=student,
        losses=result.losses,
        parts=parts,
        steps=result.steps,
        seconds=result.seconds,
        n_queries=len(queries),
        build=build,
        examples=[{"query": q, "teacher": t} for q, t in zip(queries[:5], targets[:5])],
    )
