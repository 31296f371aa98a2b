"""Train the cross-encoder relevance student on teacher-labelled triples.

Loss per batch of triples (query, pos, neg):
    Margin-MSE(student margin, teacher margin)
  + soft_label_weight * KL(teacher E/S/C/I || student) on both products
  + gold_mix_weight * cross-entropy on gold ESCI labels (optional; a batch of labelled pairs).

With ``list_size`` the same products a step come as groups of one query's products instead: the
margin term covers every pair within a group, and ``listwise_weight`` adds the KL between the
teacher's and the student's softmax over the group's scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from minielm.config import DistillConfig, RelevanceStudentConfig
from minielm.distill.augment import (
    PROB_COLUMNS,
    AugmentedDataError,
    check_products_known,
    validate_labelled_triples,
)
from minielm.distill.losses import group_margin_mse, listwise_kl, margin_mse, soft_label_kl
from minielm.distill.training import remove_checkpoints, run_engine, training_config
from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.models.cross_encoder import CrossEncoderScorer
from minielm.models.relevance_score import ESCI_CLASSES

log = get_logger(__name__)


@dataclass
class RelevanceDistillResult:
    losses: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    n_triples: int = 0


def new_relevance_student(
    config: RelevanceStudentConfig, teacher_relevance_dir: Path | str | None = None
) -> CrossEncoderScorer:
    """The untrained student: the pretrained backbone, or (``teacher_layers``) some of the teacher's layers."""
    if config.teacher_layers is None:
        return CrossEncoderScorer.from_backbone(
            config.backbone, max_length=config.max_length, num_layers=config.num_layers
        )
    if teacher_relevance_dir is None:
        raise InputError(
            "distill.relevance.teacher_layers: the student starts from the relevance teacher, but no teacher "
            "directory was given"
        )
    from minielm.models.relevance_teacher import RelevanceTeacher

    teacher = RelevanceTeacher.load(teacher_relevance_dir)
    return CrossEncoderScorer.from_teacher(teacher, config.teacher_layers, max_length=config.max_length)


def _gold_frame(gold: pd.DataFrame | None, product_texts: Mapping[str, str]) -> pd.DataFrame:
    """The gold pairs, checked whole: a bad label or an unknown product fails, nothing is dropped."""
    if gold is None or len(gold) == 0:
        raise AugmentedDataError("distill.gold_mix_weight > 0 but the gold pairs have 0 rows")
    missing = sorted({"query", "product_id", "esci_label"} - set(gold.columns))
    if missing:
        raise AugmentedDataError(f"gold pairs lack columns {missing}")
    outside = ~gold["esci_label"].astype(str).isin(ESCI_CLASSES)
    if outside.any():
        bad = sorted(set(gold.loc[outside, "esci_label"].astype(str)))[:5]
        raise AugmentedDataError(
            f"gold pairs: column 'esci_label' has {int(outside.sum())} row(s) with labels {bad} "
            f"outside {list(ESCI_CLASSES)}"
        )
    check_products_known(gold, ("product_id",), product_texts, "gold pairs")
    return gold.reset_index(drop=True)


def labelled_pairs(labelled: pd.DataFrame) -> pd.DataFrame:
    """One row per (query, product) of the triples, with the teacher's score and any class probabilities."""
    sides = []
    for side in ("pos", "neg"):
        names = {f"{side}_product_id": "product_id", f"{side}_score": "score"}
        names.update({f"{side}_{c}": c for c in PROB_COLUMNS if f"{side}_{c}" in labelled.columns})
        sides.append(labelled[["query", *names]].rename(columns=names))
    return pd.concat(sides, ignore_index=True).drop_duplicates(["query", "product_id"]).reset_index(drop=True)


def query_groups(pairs: pd.DataFrame) -> list[np.ndarray]:
    """Row indices of each query's products, for queries with at least two (a group needs a comparison)."""
    groups = [rows for rows in pairs.groupby("query", sort=True).indices.values() if len(rows) >= 2]
    if not groups:
        raise AugmentedDataError(
            f"distill.relevance.list_size: none of the {pairs['query'].nunique()} queries has 2 or more "
            "teacher-labelled products to form a group"
        )
    return groups


def draw_groups(groups: list[np.ndarray], products: int, list_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random groups of 2 to ``list_size`` products, ``products`` in all, or one fewer when one would be left alone."""
    picked: list[np.ndarray] = []
    left = products
    while left >= 2:
        rows = groups[int(rng.integers(0, len(groups)))]
        take = min(list_size, len(rows), left)
        picked.append(rng.choice(rows, size=take, replace=False))
        left -= take
    return picked


def distill_relevance(
    student: CrossEncoderScorer,
    labelled: pd.DataFrame,
    product_texts: Mapping[str, str],
    config: DistillConfig,
    work_dir: Path,
    gold: pd.DataFrame | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> RelevanceDistillResult:
    """Train ``student`` in place through the DeepSpeed engine; returns the loss history.

    All inputs are checked before the engine starts, so bad data fails in milliseconds.
    """
    validate_labelled_triples(labelled)
    check_products_known(labelled, ("pos_product_id", "neg_product_id"), product_texts, "labelled triples")
    has_soft = all(f"{side}_{c}" in labelled.columns for side in ("pos", "neg") for c in PROB_COLUMNS)
    if config.relevance.soft_label_weight > 0 and not has_soft:
        raise AugmentedDataError(
            "distill.relevance.soft_label_weight > 0 needs the teacher's class probabilities "
            "(pos_E..neg_I columns) in the labelled triples"
        )
    gold = _gold_frame(gold, product_texts) if config.relevance.gold_mix_weight > 0 else None
    steps = steps or config.relevance.steps
    size = config.relevance.batch_size
    label_index = {c: i for i, c in enumerate(ESCI_CLASSES)}
    pos_cols = [f"pos_{c}" for c in PROB_COLUMNS]
    neg_cols = [f"neg_{c}" for c in PROB_COLUMNS]

    list_size = config.relevance.list_size
    if list_size:
        pairs = labelled_pairs(labelled)
        groups = query_groups(pairs)

    def triple_batch(rng: np.random.Generator) -> dict:
        rows = labelled.iloc[rng.integers(0, len(labelled), size=size)]
        queries = rows["query"].tolist()
        texts = [product_texts[p] for p in rows["pos_product_id"]] + [product_texts[p] for p in rows["neg_product_id"]]
        batch = {
            "inputs": dict(student.encode(queries + queries, texts)),
            "t_pos": torch.tensor(rows["pos_score"].to_numpy(np.float32)),
            "t_neg": torch.tensor(rows["neg_score"].to_numpy(np.float32)),
        }
        if config.relevance.soft_label_weight > 0:
            batch["soft"] = torch.tensor(
                np.concatenate([rows[pos_cols].to_numpy(np.float32), rows[neg_cols].to_numpy(np.float32)])
            )
        return batch

    def group_batch(rng: np.random.Generator) -> dict:
        picked = draw_groups(groups, 2 * size, list_size, rng)
        rows = pairs.iloc[np.concatenate(picked)]
        batch = {
            "inputs": dict(student.encode(rows["query"].tolist(), [product_texts[p] for p in rows["product_id"]])),
            "t_scores": torch.tensor(rows["score"].to_numpy(np.float32)),
            "sizes": [len(g) for g in picked],
        }
        if config.relevance.soft_label_weight > 0:
            batch["soft"] = torch.tensor(rows[list(PROB_COLUMNS)].to_numpy(np.float32))
        return batch

    def batches(start: int) -> Iterator[dict]:
        micro_step = start
        while True:
            rng = np.random.default_rng([seed, micro_step])
            batch = group_batch(rng) if list_size else triple_batch(rng)
            if gold is not None:
                picked = gold.iloc[rng.integers(0, len(gold), size=size)]
                batch["gold_inputs"] = dict(
                    student.encode(picked["query"].tolist(), [product_texts[p] for p in picked["product_id"]])
                )
                batch["gold_target"] = torch.tensor([label_index[v] for v in picked["esci_label"]])
            yield batch
            micro_step += 1

    parts: list[dict[str, float]] = []

    def loss_fn(engine, batch: dict) -> torch.Tensor:
        logits = engine(**batch["inputs"])
        scores = engine.module.score_from_logits(logits)
        if "sizes" in batch:
            loss = group_margin_mse(scores, batch["t_scores"], batch["sizes"])
            record = {"margin_mse": float(loss.detach())}
            if config.relevance.listwise_weight > 0:
                kl = listwise_kl(scores, batch["t_scores"], batch["sizes"], config.relevance.listwise_temperature)
                loss = loss + config.relevance.listwise_weight * kl
                record["listwise_kl"] = float(kl.detach())
        else:
            s_pos, s_neg = scores.chunk(2)
            loss = margin_mse(s_pos, s_neg, batch["t_pos"], batch["t_neg"])
            record = {"margin_mse": float(loss.detach())}
        if "soft" in batch:
            kl = soft_label_kl(logits, batch["soft"])
            loss = loss + config.relevance.soft_label_weight * kl
            record["soft_kl"] = float(kl.detach())
        if "gold_inputs" in batch:
            ce = F.cross_entropy(engine(**batch["gold_inputs"]), batch["gold_target"])
            loss = loss + config.relevance.gold_mix_weight * ce
            record["gold_ce"] = float(ce.detach())
        parts.append(record)
        return loss

    torch.manual_seed(seed)
    engine_config = training_config(steps, size, config.relevance.learning_rate, config.zero_stage, seed)
    result = run_engine(student.model, loss_fn, batches, engine_config, Path(work_dir), "distill relevance")
    student.model.eval()
    remove_checkpoints(Path(work_dir))
    out = RelevanceDistillResult(
        losses=result.losses, parts=parts, steps=result.steps, seconds=result.seconds, n_triples=len(labelled)
    )
    if out.losses:
        log.info(
            "relevance student distilled",
            steps=out.steps,
            triples=len(labelled),
            seconds=round(out.seconds, 1),
            first_loss=round(out.losses[0], 4),
            last_loss=round(out.losses[-1], 4),
        )
    return out
