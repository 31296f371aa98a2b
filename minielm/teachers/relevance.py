"""Stage function: fine-tune the LM relevance teacher (4-way ESCI head) and evaluate it.

Trained on the labelled pairs of the train split with soft targets (smoothed one-hot), through
the DeepSpeed core, resumable, exported to ``output_dir/final``. Evaluated on the held-out split:
accuracy, macro-F1, log loss and nDCG@k of the judged products ranked by the teacher's score.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from minielm.data.esci import EsciData
from minielm.logs import get_logger
from minielm.models.backbones import sequence_classifier
from minielm.models.relevance_score import expected_gain
from minielm.models.relevance_teacher import (
    MODEL_CLASS,
    RelevanceTeacher,
    collate_relevance_examples,
    encode_relevance_example,
    keep_first_layers,
    soft_target_loss,
    soft_targets,
)
from minielm.teachers.common import TeacherRun, is_main_process, run_tokenizer, write_metrics, write_model_metadata
from minielm.teachers.config import RelevanceTeacherConfig
from minielm.teachers.data import data_fingerprint, load_teacher_data, product_texts, relevance_frame
from minielm.teachers.metrics import relevance_metrics

log = get_logger(__name__)


def evaluate_relevance(teacher: RelevanceTeacher, frame, k: int = 10) -> dict[str, Any]:
    probabilities = teacher.predict_proba(frame["query"].tolist(), frame["product_text"].tolist())
    scores = expected_gain(probabilities)
    return relevance_metrics(frame, probabilities, scores, k=k)


def train_relevance_teacher(
    data: EsciData | Path | str,
    output_dir: Path | str,
    config: RelevanceTeacherConfig,
    *,
    cache_dir: Path | str = ".cache/models",
    top_k: int = 10,
    on_step: Callable[[int, float], None] | None = None,
) -> TeacherRun:
    """Validate the data, fine-tune, export to ``output_dir/final`` and evaluate; resumable."""
    from minielm.training.engine import train

    output_dir = Path(output_dir)
    dataset = load_teacher_data(data)
    texts = product_texts(dataset)
    train_frame = relevance_frame(
        dataset, config.train_split, texts, limit=config.max_train_examples, seed=config.training.seed
    )
    eval_frame = relevance_frame(
        dataset, config.eval_split, texts, limit=config.max_eval_examples, seed=config.training.seed
    )
    log.info("relevance teacher config", **config.model_dump(mode="json"))
    corpus = train_frame["query"].drop_duplicates().tolist() + list(texts.values())
    tokenizer = run_tokenizer(output_dir, config.backbone, corpus, Path(cache_dir), config.tiny.vocab_size)
    torch.manual_seed(config.training.seed)
    model = sequence_classifier(config.backbone, tokenizer, cache_dir, config.tiny)
    if config.backbone_layers:
        keep_first_layers(model, config.backbone_layers)
    targets = soft_targets(train_frame["esci_label"].tolist(), config.label_smoothing)
    encoded = [
        {"input_ids": encode_relevance_example(tokenizer, q, p, config.max_length), "targets": t}
        for q, p, t in zip(train_frame["query"], train_frame["product_text"], targets)
    ]
    result = train(
        model,
        soft_target_loss,
        config.training,
        output_dir,
        dataset=encoded,
        collate_fn=partial(collate_relevance_examples, pad_token_id=tokenizer.pad_token_id),
        tokenizer=tokenizer,
        on_step=on_step,
        description="teacher-relevance",
    )
    metrics: dict[str, Any] = {}
    if is_main_process():
        teacher = RelevanceTeacher.load(
            result.export_dir, max_length=config.max_length, batch_size=config.eval_batch_size
        )
        metrics = {"split": config.eval_split, **evaluate_relevance(teacher, eval_frame, k=top_k)}
        metrics.update({f"train_{k}": v for k, v in result.summary().items()})
        metadata = {
            "model_class": MODEL_CLASS,
            "role": "teacher-relevance",
            "backbone": config.backbone,
            "max_length": config.max_length,
            "decoder_layers": model.config.num_hidden_layers,
            "metrics": metrics,
            "data_hash": data_fingerprint(train_frame[["query_id", "product_id", "esci_label"]].values.tolist()),
            "config": config.model_dump(mode="json"),
            "n_train_pairs": len(train_frame),
        }
        write_model_metadata(result.export_dir, metadata)
        write_metrics(output_dir, metrics)
        log.info("relevance teacher evaluated", **metrics)
    return TeacherRun(
        name="teacher-relevance",
        model_dir=output_dir / "final",
        metrics=metrics,
        train=result.summary(),
        metadata={"backbone": config.backbone},
    )
