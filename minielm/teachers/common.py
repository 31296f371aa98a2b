"""What both teacher trainers share: the run record, the resumable tokenizer, metadata files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from minielm.models.backbones import backbone_tokenizer
from minielm.models.tokenizer import load_tokenizer

TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.json"


@dataclass
class TeacherRun:
    """Where a trained teacher went and how good it is (``metrics`` also lands in metrics.json)."""

    name: str
    model_dir: Path
    metrics: dict[str, Any]
    train: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model_dir": str(self.model_dir), "metrics": self.metrics, "train": self.train}


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_tokenizer(
    output_dir: Path, backbone: str, corpus: Iterable[str], cache_dir: Path, vocab_size: int
) -> PreTrainedTokenizerBase:
    """The tokenizer of this run: the one saved by an earlier (killed) attempt, else a new one, saved.

    Reusing the saved one keeps token ids stable across a resume even if the corpus changed order.
    """
    saved = output_dir / TOKENIZER_DIR
    if (saved / "tokenizer_config.json").is_file():
        return load_tokenizer(saved)
    tokenizer = backbone_tokenizer(backbone, corpus, cache_dir, vocab_size=vocab_size)
    if is_main_process():
        tokenizer.save_pretrained(saved)
    return tokenizer


def write_model_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    """metadata.json in the exported dir (model_class for the serving loader, metrics, config)."""
    (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> None:
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str))
