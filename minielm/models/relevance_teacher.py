"""The LM relevance teacher: a decoder with a 4-way ESCI head on its last token.

It reads ``format_relevance_input(query, product_text)`` and outputs probabilities over Exact,
Substitute, Complement, Irrelevant; those soft targets (temperature-scaled: ``softmax(logits / T)``)
and their expected graded gain (the scalar score, :mod:`minielm.models.relevance_score`) label
unlabelled pairs for the cross-encoder student. Trained with cross-entropy against soft targets, so
hard labels (one-hot, optionally smoothed) and another teacher's probabilities use the same loss.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from minielm.models.prompts import RELEVANCE_PRODUCT_PREFIX, clean_text, relevance_query_suffix
from minielm.models.relevance_score import ESCI_CLASSES, expected_gain
from minielm.models.tokenizer import ensure_pad_token, load_tokenizer

METADATA_FILE = "metadata.json"
MODEL_CLASS = "minielm.models.relevance_teacher:RelevanceTeacher"


def encode_relevance_example(
    tokenizer: PreTrainedTokenizerBase, query: str, product_text: str, max_length: int
) -> list[int]:
    """Token ids of ``format_relevance_input``; the product text is cut so the query and the answer cue
    at the end always survive."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prefix = tokenizer(RELEVANCE_PRODUCT_PREFIX, add_special_tokens=False)["input_ids"]
    product = tokenizer(" " + clean_text(product_text), add_special_tokens=False)["input_ids"]
    suffix = tokenizer(relevance_query_suffix(query), add_special_tokens=False)["input_ids"]
    room = max(0, max_length - len(bos) - len(prefix) - len(suffix))
    return (bos + prefix + product[:room] + suffix)[-max_length:]


def soft_targets(labels: Sequence[str], smoothing: float = 0.0) -> torch.Tensor:
    """One-hot ESCI targets with label smoothing spread over the other classes."""
    index = {c: i for i, c in enumerate(ESCI_CLASSES)}
    targets = torch.full((len(labels), len(ESCI_CLASSES)), smoothing / (len(ESCI_CLASSES) - 1))
    for row, label in enumerate(labels):
        targets[row, index[label]] = 1.0 - smoothing
    return targets


def right_padded(rows: Sequence[Sequence[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Token id rows right-padded into ``input_ids`` and their ``attention_mask``."""
    width = max((len(row) for row in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        attention[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def collate_relevance_examples(examples: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``{"input_ids", "targets"}`` examples into a batch (targets: 4 probabilities each)."""
    targets = torch.stack([torch.as_tensor(e["targets"], dtype=torch.float32) for e in examples])
    return {**right_padded([e["input_ids"] for e in examples], pad_token_id), "targets": targets}


def keep_first_layers(model: PreTrainedModel, num_layers: int) -> PreTrainedModel:
    """Cut a decoder classifier to its first ``num_layers`` (pretrained) layers; its config follows, so
    the saved model reloads with that depth. Why: each layer costs the same per token, so a teacher of N
    layers trains and labels in N/30 of SmolLM2's time while keeping the pretrained lower layers."""
    decoder = model.base_model
    total = len(decoder.layers)
    if not 1 <= num_layers <= total:
        raise ValueError(f"backbone_layers: expected 1..{total} (the backbone's decoder layers), got {num_layers}")
    decoder.layers = decoder.layers[:num_layers]
    model.config.num_hidden_layers = num_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:num_layers]
    return model


def class_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """ESCI logits, read by the head at each row's last non-pad token (the config's pad_token_id)."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()


def soft_target_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the predicted ESCI distribution against the batch's soft targets."""
    logits = class_logits(model, batch["input_ids"], batch["attention_mask"])
    return -(batch["targets"] * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


class RelevanceTeacher:
    """A :class:`~minielm.models.interfaces.RelevanceScorer` over a decoder sequence classifier."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        version: str = "unversioned",
        max_length: int = 128,
        batch_size: int = 64,
        temperature: float = 1.0,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        self.model = model.eval()
        self.temperature = temperature
        self.tokenizer = ensure_pad_token(tokenizer)
        self.version = version
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, directory: Path | str, version: str | None = None, **kwargs: Any) -> RelevanceTeacher:
        directory = Path(directory)
        metadata = json.loads((directory / METADATA_FILE).read_text()) if (directory / METADATA_FILE).is_file() else {}
        model = AutoModelForSequenceClassification.from_pretrained(str(directory), dtype=torch.float32)
        if tuple(model.config.id2label[i] for i in range(model.config.num_labels)) != ESCI_CLASSES:
            raise ValueError(
                f"{directory}: the classifier's labels are {model.config.id2label}, expected {ESCI_CLASSES}"
            )
        kwargs.setdefault("max_length", int(metadata.get("max_length", 128)))
        return cls(
            model, load_tokenizer(directory), version=version or str(metadata.get("version", "unversioned")), **kwargs
        )

    def save(self, directory: Path | str, metadata: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        record = {
            "model_class": MODEL_CLASS,
            "version": self.version,
            "max_length": self.max_length,
            **(metadata or {}),
        }
        (directory / METADATA_FILE).write_text(json.dumps(record, indent=2))
        return directory

    @torch.no_grad()
    def predict_proba(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        """``softmax(logits / temperature)``: T > 1 softens the soft labels the student learns from."""
        return self._softmax(self.logits(queries, product_texts))

    def _softmax(self, logits: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(logits) / self.temperature, dim=-1).numpy().astype(np.float32)

    @torch.no_grad()
    def logits(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        """Raw ESCI logits, shape (n, 4)."""
        if len(queries) != len(product_texts):
            raise ValueError(f"got {len(queries)} queries but {len(product_texts)} product texts")
        if not len(queries):
            return np.zeros((0, len(ESCI_CLASSES)), dtype=np.float32)
        device = next(self.model.parameters()).device
        chunks = []
        for start in range(0, len(queries), self.batch_size):
            rows = [
                encode_relevance_example(self.tokenizer, q, p, self.max_length)
                for q, p in zip(
                    queries[start : start + self.batch_size], product_texts[start : start + self.batch_size]
                )
            ]
            batch = right_padded(rows, self.tokenizer.pad_token_id)
            logits = class_logits(self.model, batch["input_ids"].to(device), batch["attention_mask"].to(device))
            chunks.append(logits.cpu().numpy())
        return np.concatenate(chunks).astype(np.float32)

    def score(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        return expected_gain(self.predict_proba(queries, product_texts))
