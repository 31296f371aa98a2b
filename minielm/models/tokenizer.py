"""Tokenizers: an offline byte-level BPE trained on catalog and query text, or a saved one.

The tiny backbone gets its tokenizer this way (milliseconds on a toy catalog, no download); the
SmolLM2 backbone brings its own (see :mod:`minielm.models.backbones`). Either way the model
directory holds the tokenizer next to the weights, and :func:`load_tokenizer` reads it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from minielm.models.prompts import REWRITE_INSTRUCTION

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """A lower-casing byte-level BPE over ``texts`` (plus the prompt words), with pad/bos/eos tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if vocab_size < 300:
        raise ValueError(f"vocab_size must be at least 300 (256 bytes + specials), got {vocab_size}")
    core = Tokenizer(models.BPE(unk_token=None))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    prompt_words = [REWRITE_INSTRUCTION, "Query: Rewrite: Product: Answer:"] * 10
    core.train_from_iterator(list(prompt_words) + [str(t) for t in texts], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK, padding_side="right"
    )


def load_tokenizer(directory: Path | str) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model directory, with a pad token guaranteed."""
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return ensure_pad_token(tokenizer)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Batching needs a pad token; reuse EOS when the tokenizer has none (attention masks hide it)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[Any]:
    """Each text's encoding without special tokens, as ``tokenizer(texts, add_special_tokens=False)`` gives it,
    with ``.ids`` and ``.tokens``: straight from the Rust tokenizer when there is one (serving tokenizes every
    request several times, and the Python wrapper costs more than the tokenization itself)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.encode_batch(list(texts), add_special_tokens=False)
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [SimpleNamespace(ids=row, tokens=tokenizer.convert_ids_to_tokens(row)) for row in ids]
