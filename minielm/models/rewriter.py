"""A causal LM that rewrites shopper queries: the teacher rewriter (and any decoder student).

It reads the prompt of :mod:`minielm.models.prompts` and generates the rewrite after it, in
batches, greedily (beam search when several rewrites are asked for, so they come best first) or by
sampling. A directory saved with :meth:`CausalRewriter.save` (or exported by the training engine,
plus the tokenizer) loads with :meth:`CausalRewriter.load` and with plain transformers.

A rewriter may have a rule-based *front end* (``front_end/``: the phrase-table + spelling baseline of
:mod:`minielm.baseline`), making it a cascade: the LM reads the front end's rewrite of the query and
learns only what the rules miss, and when the LM abstains (low confidence, or the intent guard rejects
its rewrite against the *original* query) the front end's rewrite is served. :class:`ServedRewriting`
holds that rule once for every generation backend (Hugging Face here, CTranslate2 in
:mod:`minielm.models.ct2_rewriter`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from minielm.baseline import PhraseTableRewriter
from minielm.errors import InputError
from minielm.models.output_vocabulary import (
    AllowedTokensProcessor,
    load_output_vocabulary,
    save_output_vocabulary,
)
from minielm.models.prompts import clean_text, extract_rewrite, format_rewrite_answer, format_rewrite_prompt
from minielm.models.rewrite_guard import RewriteGuard
from minielm.models.tokenizer import encode_texts, ensure_pad_token, load_tokenizer

METADATA_FILE = "metadata.json"
GUARD_FILE = "rewrite_guard.json"
MODEL_CLASS = "minielm.models.rewriter:CausalRewriter"
FRONT_END_DIR = "front_end"
# metadata.json "front_end": what the LM reads. "none": the query; "baseline": the phrase-table + spelling
# rewrite of the query (saved in FRONT_END_DIR).
FRONT_ENDS = ("none", "baseline")


def encode_prompts(tokenizer: PreTrainedTokenizerBase, queries: Sequence[str]) -> list[tuple[list[int], list[str]]]:
    """Token ids and token strings of each query's rewrite prompt, BOS first when the tokenizer has one; the
    same in training and generation (CTranslate2 reads the strings)."""
    has_bos = tokenizer.bos_token_id is not None
    bos_ids, bos_tokens = ([tokenizer.bos_token_id], [tokenizer.bos_token]) if has_bos else ([], [])
    encoded = encode_texts(tokenizer, [format_rewrite_prompt(q) for q in queries])
    return [(bos_ids + list(e.ids), bos_tokens + list(e.tokens)) for e in encoded]


def encode_prompt(tokenizer: PreTrainedTokenizerBase, query: str) -> list[int]:
    """Token ids of one query's rewrite prompt (:func:`encode_prompts`)."""
    return encode_prompts(tokenizer, [query])[0][0]


def encode_rewrite_example(
    tokenizer: PreTrainedTokenizerBase, query: str, rewrite: str, max_prompt_tokens: int, max_answer_tokens: int
) -> dict[str, list[int]]:
    """Prompt + answer + EOS, with labels only on the answer and EOS (prompt positions are -100)."""
    prompt = encode_prompt(tokenizer, query)[-max_prompt_tokens:]
    answer = tokenizer(format_rewrite_answer(rewrite), add_special_tokens=False)["input_ids"][:max_answer_tokens]
    answer = answer + [tokenizer.eos_token_id]
    return {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}


def collate_rewrite_examples(examples: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of encoded examples; padding is masked out of attention and loss."""
    width = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        attention[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def answer_token_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (the labels that are not -100)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shifted = logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=-100
    )


def save_front_end(directory: Path, front_end: PhraseTableRewriter | None) -> dict[str, str]:
    """Write the front end beside the weights; returns the metadata entry that names it."""
    if front_end is None:
        return {"front_end": "none"}
    front_end.save(Path(directory) / FRONT_END_DIR)
    return {"front_end": "baseline"}


def load_front_end(directory: Path, metadata: dict[str, Any]) -> PhraseTableRewriter | None:
    """The front end a saved rewriter was trained with (metadata ``front_end``), or None."""
    kind = metadata.get("front_end", "none")
    if kind not in FRONT_ENDS:
        raise InputError(f"{directory / METADATA_FILE}: front_end {kind!r}, expected one of {', '.join(FRONT_ENDS)}")
    if kind == "none":
        return None
    if not PhraseTableRewriter.is_saved_in(directory / FRONT_END_DIR):
        raise InputError(
            f"{directory}: metadata says front_end 'baseline' but {FRONT_END_DIR}/ holds no saved baseline "
            "(the LM was trained on the baseline's rewrites and cannot be served without it)"
        )
    return PhraseTableRewriter.load(directory / FRONT_END_DIR)


def saved_serving_options(directory: Path, version: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A saved rewriter's serving options (version, threshold, token budget, intent guard, front end) from its
    directory, under ``options`` given by the caller: one reading for every generation backend."""
    metadata = json.loads((directory / METADATA_FILE).read_text()) if (directory / METADATA_FILE).is_file() else {}
    options = dict(options)
    options["version"] = version or str(metadata.get("version", "unversioned"))
    options.setdefault("min_confidence", float(metadata.get("min_confidence", 0.0)))
    options.setdefault("max_new_tokens", int(metadata.get("max_new_tokens", 32)))
    if "guard" not in options and (directory / GUARD_FILE).is_file():
        options["guard"] = RewriteGuard.load(directory / GUARD_FILE)
    if "front_end" not in options:
        options["front_end"] = load_front_end(directory, metadata)
    return options


class EndAfterBudget(LogitsProcessor):
    """Forces EOS on each row of a left-padded batch once it has generated its budget of tokens (rows with the
    batch's longest budget stop there through ``max_new_tokens``), so each rewrite stops at its own length."""

    def __init__(self, budgets: Sequence[int], prompt_width: int, eos_token_id: int) -> None:
        self.budgets = torch.tensor(budgets)
        self.prompt_width = prompt_width
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        done = self.budgets.to(scores.device) <= input_ids.shape[1] - self.prompt_width
        if done.any():
            scores = scores.clone()
            scores[done] = -float("inf")
            scores[done, self.eos_token_id] = 0.0
        return scores


class ServedRewriting:
    """The serving rule of a generating rewriter, whatever generates: the LM reads the front end's rewrite
    (the query itself without one); its greedy rewrite is served unless its confidence is below
    ``min_confidence`` or the intent guard rejects it against the original query, in which case the front
    end's rewrite (the query) is served. Subclasses implement :meth:`generate_with_confidence`; the
    serving options every backend shares are set here."""

    def __init__(
        self,
        *,
        version: str = "unversioned",
        max_new_tokens: int = 32,
        max_new_tokens_over_query: int | None = None,
        batch_size: int = 32,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_confidence: float = 0.0,
        guard: RewriteGuard | None = None,
        front_end: PhraseTableRewriter | None = None,
    ) -> None:
        self.version = version
        self.max_new_tokens = max_new_tokens
        # A greedy rewrite is rarely longer than its input plus a few tokens; one that is has run away (it
        # repeats itself up to max_new_tokens), so it stops there (None: only max_new_tokens bounds it).
        self.max_new_tokens_over_query = max_new_tokens_over_query
        self.batch_size = batch_size
        self.temperature = temperature
        self.top_p = top_p
        # Greedy rewrites whose least likely token has a lower probability keep the raw query (selective
        # rewriting: a small model's unsure rewrites hurt search more than they help).
        self.min_confidence = min_confidence
        # A served rewrite that loses a content word of the query keeps the raw query instead.
        self.guard = guard
        # The rules the LM's input went through in training (see the module docstring).
        self.front_end = front_end

    def generate_with_confidence(self, inputs: Sequence[str]) -> list[tuple[str, float]]:
        """The LM's greedy rewrite of each input (already through the front end) and its confidence."""
        raise NotImplementedError

    def token_budgets(self, inputs: Sequence[str]) -> list[int]:
        """New tokens each greedy generation may take (EOS excluded): ``max_new_tokens``, or less with
        ``max_new_tokens_over_query``: the input's own token count (as the prompt holds it) plus that many."""
        if self.max_new_tokens_over_query is None:
            return [self.max_new_tokens] * len(inputs)
        encoded = encode_texts(self.tokenizer, [" " + clean_text(text) for text in inputs])
        return [min(self.max_new_tokens, len(e.ids) + self.max_new_tokens_over_query) for e in encoded]

    def lm_inputs(self, queries: Sequence[str]) -> list[str]:
        """What the LM reads for each query: the front end's rewrite, or the query."""
        return self.front_end(queries) if self.front_end is not None else list(queries)

    def rewrite_with_confidence(self, queries: Sequence[str]) -> list[tuple[str, float]]:
        """Greedy LM rewrite of each query (through the front end) with its confidence: the probability of
        its least likely token. Unfiltered: :meth:`serve_choice` decides what is served."""
        return self.generate_with_confidence(self.lm_inputs(queries))

    def serve_choice(self, query: str, rewrite: str, confidence: float, fallback: str | None = None) -> str:
        """What serving returns for a greedy rewrite: the rewrite, or ``fallback`` (the front end's rewrite;
        the query itself by default) when the model is unsure (confidence below ``min_confidence``) or the
        rewrite fails the intent guard against the original query."""
        if confidence < self.min_confidence or (self.guard is not None and not self.guard.allows(query, rewrite)):
            return clean_text(query) if fallback is None else fallback
        return rewrite

    def served_rewrites(self, queries: Sequence[str]) -> list[str]:
        """The served rewrite of each query (one greedy generation through :meth:`serve_choice`)."""
        inputs = self.lm_inputs(queries)
        fallbacks = inputs if self.front_end is not None else [clean_text(q) for q in queries]
        scored = self.generate_with_confidence(inputs)
        return [
            self.serve_choice(query, text, confidence, fallback)
            for query, fallback, (text, confidence) in zip(queries, fallbacks, scored)
        ]

    def needs_serve_choice(self, num_return: int, do_sample: bool) -> bool:
        """A single greedy rewrite (what serving asks for) is filtered by :meth:`serve_choice`; sampled or
        several rewrites (RL, candidate generation) come unfiltered."""
        guarded = self.min_confidence > 0 or self.guard is not None or self.front_end is not None
        return num_return == 1 and not do_sample and guarded


class CausalRewriter(ServedRewriting):
    """A :class:`~minielm.models.interfaces.QueryRewriter` over a causal LM and its tokenizer."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        output_token_ids: Sequence[int] | None = None,
        **serving: Any,
    ) -> None:
        """``serving``: the options of :class:`ServedRewriting` (version, threshold, guard, front end...)."""
        super().__init__(**serving)
        self.model = model.eval()
        # The tokens the rewriter may write (None: all); see minielm.models.output_vocabulary.
        self.output_token_ids = list(output_token_ids) if output_token_ids else None
        self.tokenizer = ensure_pad_token(tokenizer)

    @classmethod
    def load(cls, directory: Path | str, version: str | None = None, **kwargs: Any) -> CausalRewriter:
        directory = Path(directory)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        kwargs.setdefault("output_token_ids", load_output_vocabulary(directory, model.config.vocab_size))
        return cls(model, load_tokenizer(directory), **saved_serving_options(directory, version, kwargs))

    def save(self, directory: Path | str, metadata: dict[str, Any] | None = None) -> Path:
        from minielm.models.ct2_rewriter import remove_exports  # it imports this module

        directory = Path(directory)
        remove_exports(directory)  # an export of weights saved here before would be served instead of these
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.guard is not None:
            self.guard.save(directory / GUARD_FILE)
        if self.output_token_ids:
            save_output_vocabulary(directory, self.output_token_ids, self.model.config.vocab_size)
        record = {
            "model_class": MODEL_CLASS,
            "version": self.version,
            "min_confidence": self.min_confidence,
            **save_front_end(directory, self.front_end),
            **(metadata or {}),
        }
        (directory / METADATA_FILE).write_text(json.dumps(record, indent=2))
        return directory

    def _left_padded(self, queries: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = [ids for ids, _ in encode_prompts(self.tokenizer, queries)]
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], dtype=torch.long)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], dtype=torch.long)
        device = next(self.model.parameters()).device
        return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}

    def _logits_processors(self) -> LogitsProcessorList:
        """The output-vocabulary mask (none without an output vocabulary)."""
        if not self.output_token_ids:
            return LogitsProcessorList()
        return LogitsProcessorList([AllowedTokensProcessor(self.output_token_ids)])

    @torch.no_grad()
    def generate_with_confidence(self, queries: Sequence[str]) -> list[tuple[str, float]]:
        """Greedy rewrite of each LM input with its confidence: the probability of its least likely token."""
        results: list[tuple[str, float]] = []
        for start in range(0, len(queries), self.batch_size):
            chunk = list(queries[start : start + self.batch_size])
            inputs = self._left_padded(chunk)
            budgets = self.token_budgets(chunk)
            processors = self._logits_processors()
            processors.append(EndAfterBudget(budgets, inputs["input_ids"].shape[1], self.tokenizer.eos_token_id))
            output = self.model.generate(
                **inputs,
                max_new_tokens=max(budgets),
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                output_scores=True,
                return_dict_in_generate=True,
                logits_processor=processors,
            )
            new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
            log_probs = self.model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for row, query in enumerate(chunk):
                # Tokens up to and including the first EOS count; padding after it does not.
                ended = (new_tokens[row] == self.tokenizer.eos_token_id).nonzero()
                length = int(ended[0]) + 1 if len(ended) else new_tokens.shape[1]
                confidence = float(log_probs[row, :length].min().exp()) if length else 0.0
                results.append((extract_rewrite(texts[row]) or " ".join(query.split()), confidence))
        return results

    @torch.no_grad()
    def rewrite(self, queries: Sequence[str], num_return: int = 1, do_sample: bool = False) -> list[list[str]]:
        """``num_return`` rewrites per query (of the front end's rewrite, when there is one); an empty
        generation falls back to the LM's input. See :meth:`ServedRewriting.needs_serve_choice`."""
        if num_return < 1:
            raise ValueError(f"num_return must be at least 1, got {num_return}")
        if self.needs_serve_choice(num_return, do_sample):
            return [[text] for text in self.served_rewrites(queries)]
        if num_return == 1 and not do_sample:  # greedy: the path that honours each query's token budget
            return [[text] for text, _ in self.rewrite_with_confidence(queries)]
        queries = self.lm_inputs(queries)
        results: list[list[str]] = []
        for start in range(0, len(queries), self.batch_size):
            chunk = list(queries[start : start + self.batch_size])
            inputs = self._left_padded(chunk)
            options: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "num_return_sequences": num_return,
                "pad_token_id": self.tokenizer.pad_token_id,
                "eos_token_id": self.tokenizer.eos_token_id,
            }
            if do_sample:
                options.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
            else:
                options.update(do_sample=False, num_beams=num_return)
            output = self.model.generate(**inputs, **options, logits_processor=self._logits_processors())
            texts = self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for row, query in enumerate(chunk):
                rewrites = [extract_rewrite(t) for t in texts[row * num_return : (row + 1) * num_return]]
                results.append([r or " ".join(query.split()) for r in rewrites])
        return results
