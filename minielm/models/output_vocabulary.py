"""The rewriter's output vocabulary: the tokens its domain writes, so the LM head scores only those.

At the student shape (4 layers x 576, SmolLM2's 49,152 tokens) the LM head is most of a generated token's
compute, yet a query rewriter writes a few thousand of those tokens. Distillation records them in
``output_vocabulary.json`` beside the weights: the tokens of the training queries, of the teacher's rewrites
and of the catalog titles (each tokenized as it follows the prompt), the special tokens and the byte tokens.
Every generation backend then picks the next token among those only, so all of them run one model:

- Hugging Face generation masks the other logits (:class:`AllowedTokensProcessor`): evaluation, calibration
  and the quality gate measure the model that is served;
- the CTranslate2 export (:func:`trim_ct2_spec`) renumbers the vocabulary so the kept tokens come first and
  keeps only their rows of the LM head. The input embedding keeps every row, so any text tokenizes and embeds
  exactly as before: only what the model may write changes, never what it reads.

A query with a word the domain lacks (a brand the catalog does not sell) is generated with the kept tokens too:
the rewrite cannot copy that word, so the intent guard serves the front end's rewrite instead. Routing such
queries to a whole-vocabulary copy instead changed nothing measurable (distilled 4 x 576 student, 3,313 kept
tokens: identical relevant@10 on validation and test and identical real-query safety), while it cost 4-5x
CPU per generated token on the 80% of real ESCI-sample queries that have such a word. The confidence is the
probability among the kept tokens, higher than among all of them, so the confidence threshold is calibrated on
the restricted model (distillation does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from minielm.errors import InputError
from minielm.models.prompts import format_rewrite_answer

OUTPUT_VOCABULARY_FILE = "output_vocabulary.json"
TOKENIZE_CHUNK = 10_000


class OutputVocabularyError(InputError):
    """An ``output_vocabulary.json`` that does not fit the model's tokenizer; the message says how."""


def byte_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of the 256 byte-level tokens (any text can be written with them), where the tokenizer has them."""
    from tokenizers import pre_tokenizers

    vocab = tokenizer.get_vocab()
    return {vocab[char] for char in pre_tokenizers.ByteLevel.alphabet() if char in vocab}


def domain_token_ids(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[int]:
    """Sorted ids of every token the texts use when written as a rewrite, as they are and lower-cased (rewrites
    are lower-case, catalog titles are not), plus special and byte tokens."""
    kept = set(tokenizer.all_special_ids) | byte_token_ids(tokenizer)
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    unique = list(dict.fromkeys(format_rewrite_answer(t) for text in texts for t in (text, text.lower())))
    for start in range(0, len(unique), TOKENIZE_CHUNK):
        for ids in tokenizer(unique[start : start + TOKENIZE_CHUNK], add_special_tokens=False)["input_ids"]:
            kept.update(ids)
    return sorted(kept)


def save_output_vocabulary(directory: Path | str, token_ids: Sequence[int], vocab_size: int) -> Path:
    path = Path(directory) / OUTPUT_VOCABULARY_FILE
    path.write_text(json.dumps({"vocab_size": vocab_size, "token_ids": sorted(set(token_ids))}))
    return path


def load_output_vocabulary(directory: Path | str, vocab_size: int) -> list[int] | None:
    """The kept token ids saved in ``directory`` (None: the model writes its whole vocabulary)."""
    path = Path(directory) / OUTPUT_VOCABULARY_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    ids = record.get("token_ids")
    if record.get("vocab_size") != vocab_size or not ids or not all(0 <= i < vocab_size for i in ids):
        raise OutputVocabularyError(
            f"{path}: expected token_ids within a vocabulary of {vocab_size} tokens, "
            f"got {len(ids or [])} ids for a vocabulary of {record.get('vocab_size')}"
        )
    return sorted(set(ids))


class AllowedTokensProcessor(LogitsProcessor):
    """Hugging Face generation restricted to the output vocabulary: every other logit is -inf, so greedy
    picks, sampling and the normalized step scores (the confidence) are those of the trimmed LM head."""

    def __init__(self, token_ids: Sequence[int]) -> None:
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
        self._mask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._mask is None or self._mask.shape[0] != scores.shape[-1] or self._mask.device != scores.device:
            mask = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
            mask[self.token_ids.to(scores.device)] = False
            self._mask = mask
        return scores.masked_fill(self._mask, float("-inf"))


def trim_ct2_spec(spec: Any, token_ids: Sequence[int]) -> Any:
    """A CTranslate2 decoder spec whose vocabulary puts ``token_ids`` first and whose LM head has only their
    rows; the embedding keeps all rows (renumbered), so every token can still be read."""
    vocabulary = list(spec._vocabulary)  # CTranslate2 has no public getter for a loaded spec's vocabulary
    kept = sorted(set(token_ids))
    kept_set = set(kept)
    order = kept + [i for i in range(len(vocabulary)) if i not in kept_set]
    index = torch.tensor(order, dtype=torch.long)
    decoder = spec.decoder
    with torch.no_grad():
        decoder.embeddings.weight = decoder.embeddings.weight[index].detach().clone()
        decoder.projection.weight = decoder.projection.weight[index[: len(kept)]].detach().clone()
        bias = getattr(decoder.projection, "bias", None)
        if isinstance(bias, torch.Tensor):
            decoder.projection.bias = bias[index[: len(kept)]].detach().clone()
    spec.register_vocabulary([vocabulary[i] for i in order])
    return spec
