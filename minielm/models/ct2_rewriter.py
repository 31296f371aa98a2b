"""The rewriter served through CTranslate2: int8 on CPU, float16 on GPU, ~8x faster than ``generate``.

A :class:`~minielm.models.rewriter.CausalRewriter` directory gets a converted copy in its
``ctranslate2/`` subdirectory (:func:`export_ctranslate2`, run at registration so the registry holds
both). :class:`CTranslate2Rewriter` answers the same calls as the Hugging Face rewriter, with the same
prompt, the same greedy confidence (the probability of the least likely generated token, EOS
included) and the same serving rule and front end (:class:`~minielm.models.rewriter.ServedRewriting`);
training keeps using Hugging Face.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minielm.errors import ServiceError
from minielm.logs import get_logger
from minielm.models.output_vocabulary import load_output_vocabulary, trim_ct2_spec
from minielm.models.prompts import extract_rewrite
from minielm.models.rewriter import (
    METADATA_FILE,
    MODEL_CLASS,
    ServedRewriting,
    encode_prompts,
    saved_serving_options,
)
from minielm.models.tokenizer import load_tokenizer

log = get_logger(__name__)

CT2_SUBDIR = "ctranslate2"
CT2_MODEL_FILE = "model.bin"


class ConversionError(ServiceError):
    """A model directory could not be converted to (or loaded by) CTranslate2; the message says why."""


def ct2_dir(directory: Path | str) -> Path:
    return Path(directory) / CT2_SUBDIR


def has_ctranslate2(directory: Path | str) -> bool:
    return (ct2_dir(directory) / CT2_MODEL_FILE).is_file()


def remove_exports(directory: Path | str) -> None:
    """Drop the CTranslate2 export in ``directory``: new weights saved there make it stale, and the server and
    the quality gates would load it (an export is only ever checked for presence)."""
    shutil.rmtree(ct2_dir(directory), ignore_errors=True)


def is_causal_rewriter_dir(directory: Path | str) -> bool:
    """A directory saved by :meth:`CausalRewriter.save` (the only kind this backend converts)."""
    metadata_path = Path(directory) / METADATA_FILE
    if not metadata_path.is_file():
        return False
    return json.loads(metadata_path.read_text()).get("model_class") == MODEL_CLASS


def _converter(directory: Path) -> Any:
    """CTranslate2's transformers converter; with an ``output_vocabulary.json`` in ``directory`` it keeps only
    those rows of the LM head (see :mod:`minielm.models.output_vocabulary`)."""
    import ctranslate2

    class OutputTrimmingConverter(ctranslate2.converters.TransformersConverter):
        def _load(self) -> Any:
            spec = super()._load()
            kept = load_output_vocabulary(directory, len(spec._vocabulary))
            return spec if kept is None else trim_ct2_spec(spec, kept)

    return OutputTrimmingConverter(str(directory))


def export_ctranslate2(directory: Path | str, quantization: str = "int8") -> Path:
    """Convert the transformers weights in ``directory`` into ``directory/ctranslate2`` (with only the LM-head rows
    of its output vocabulary, when it has one), written beside it and renamed into place (atomically)."""
    directory = Path(directory)
    target = ct2_dir(directory)
    staging = directory / f".{CT2_SUBDIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _converter(directory).convert(str(staging), quantization=quantization, force=True)
    except Exception as error:  # the converter raises bare ValueError/NotImplementedError/KeyError
        shutil.rmtree(staging, ignore_errors=True)
        raise ConversionError(
            f"{directory}: CTranslate2 cannot convert this model ({type(error).__name__}: {error})"
        ) from error
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log.info("ctranslate2 export written", directory=str(directory), quantization=quantization)
    return target


def export_for_serving(directory: Path | str) -> Path | None:
    """Best effort at registration: a rewriter gets its CTranslate2 copy; a failure is logged, not raised,
    because the server falls back to Hugging Face generation for a model without one."""
    if not is_causal_rewriter_dir(directory) or has_ctranslate2(directory):
        return None
    try:
        return export_ctranslate2(directory)
    except ConversionError as error:
        log.warning("rewriter registered without a ctranslate2 export", error=str(error))
        return None


def _host_logits(steps: list[Any]) -> np.ndarray:
    """One hypothesis's step logits from CTranslate2 (a StorageView per step) as a float32 (steps, vocabulary)
    array, copied to the host first when they are on a GPU (float16)."""
    import ctranslate2

    rows = [view if view.device == "cpu" else view.to_device(ctranslate2.Device.cpu) for view in steps]
    return np.stack([np.asarray(row, dtype=np.float32) for row in rows]) if rows else np.zeros((0, 0), np.float32)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))


def default_device() -> tuple[str, str]:
    """(device, compute type): float16 on a GPU when CTranslate2 sees one, else int8 on CPU."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "float16"
    return "cpu", "int8"


class CTranslate2Rewriter(ServedRewriting):
    """A :class:`~minielm.models.interfaces.QueryRewriter` over a CTranslate2 ``Generator`` (with an output
    vocabulary, the trimmed export writes only its tokens, as Hugging Face generation masks the others)."""

    def __init__(self, generator: Any, tokenizer: Any, **serving: Any) -> None:
        """``serving``: the options of :class:`~minielm.models.rewriter.ServedRewriting`."""
        super().__init__(**serving)
        self.generator = generator
        self.tokenizer = tokenizer
        self._static_prompt = self._instruction_tokens()
        self._end_token = tokenizer.eos_token

    def _instruction_tokens(self) -> list[str]:
        """The prompt's tokens before the query (BOS and the instruction), the same for every query: CTranslate2
        computes their state once (``static_prompt``) instead of in every request."""
        one, other = self._prompts(["x"])[0], self._prompts(["zz top"])[0]
        return one[: next(i for i, (a, b) in enumerate(zip(one, other)) if a != b)]

    def _generate(self, prompts: list[list[str]], **options: Any) -> Any:
        """``generate_batch`` with the instruction as the static prompt when every prompt starts with it (a
        query could, in principle, merge with the instruction's last token; then the batch runs without it)."""
        static, n = self._static_prompt, len(self._static_prompt)
        if n and all(prompt[:n] == static for prompt in prompts):
            return self.generator.generate_batch(
                [prompt[n:] for prompt in prompts], static_prompt=static, include_prompt_in_result=False, **options
            )
        return self.generator.generate_batch(prompts, include_prompt_in_result=False, **options)

    @classmethod
    def load(
        cls,
        directory: Path | str,
        version: str | None = None,
        threads: int = 1,
        device: str | None = None,
        **kwargs: Any,
    ) -> CTranslate2Rewriter:
        """Load ``directory/ctranslate2`` (raises :class:`ConversionError` when it is missing or broken)."""
        import ctranslate2

        directory = Path(directory)
        if not has_ctranslate2(directory):
            raise ConversionError(f"{directory}: no {CT2_SUBDIR}/{CT2_MODEL_FILE} (run export_ctranslate2 first)")
        device_name, compute_type = default_device() if device is None else (device, "auto")

        try:
            generator = ctranslate2.Generator(
                str(ct2_dir(directory)), device=device_name, compute_type=compute_type, intra_threads=threads
            )
        except Exception as error:  # a truncated or foreign model.bin raises RuntimeError
            raise ConversionError(f"{ct2_dir(directory)}: CTranslate2 cannot load it ({error})") from error
        return cls(generator, load_tokenizer(directory), **saved_serving_options(directory, version, kwargs))

    def _prompts(self, queries: Sequence[str]) -> list[list[str]]:
        """The prompts' token strings (CTranslate2 reads strings)."""
        return [tokens for _, tokens in encode_prompts(self.tokenizer, queries)]

    def _text(self, tokens: list[str], query: str) -> str:
        """The rewrite in generated token strings (CTranslate2's ids are its own when the vocabulary is trimmed)."""
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        return extract_rewrite(self.tokenizer.decode(ids, skip_special_tokens=True)) or " ".join(query.split())

    def _greedy_with_lowest_log_prob(self, chunk: list[str]) -> list[tuple[list[str], float]]:
        """Greedy tokens of each query (at most its :meth:`token_budgets` tokens, the end token counted) and the
        lowest per-step log-probability among them.

        The log-probabilities come from the step logits CTranslate2 returns, not from a per-step Python callback:
        a callback takes the GIL at every step of every query, and while the server's event loop holds it each
        step waits for the interpreter's switch interval (a batch of 16 ran 6.8x slower beside a busy Python
        thread). A query generated past its budget (the batch runs to the largest) is cut back to it.
        """
        prompts = self._prompts(chunk)
        budgets = self.token_budgets(chunk)
        # CTranslate2 counts steps (and max_length) from the end of the batch's shortest prompt: a longer prompt's
        # first steps are its own remaining prompt tokens, and its first logits rows belong to those steps.
        shortest = min(len(prompt) for prompt in prompts)
        offsets = [len(prompt) - shortest for prompt in prompts]
        generated = self._generate(
            prompts,
            max_length=max(budget + offset for budget, offset in zip(budgets, offsets)),
            return_end_token=True,
            return_logits_vocab=True,
        )
        results = []
        for result, budget, offset in zip(generated, budgets, offsets):
            ids = result.sequences_ids[0][:budget]
            logits = _host_logits(result.logits[0])[offset : offset + len(ids)]
            log_probs = logits[np.arange(len(ids)), ids] - _logsumexp(logits)
            tokens = [t for t in result.sequences[0][: len(ids)] if t != self._end_token]
            results.append((tokens, float(log_probs.min()) if len(ids) else 0.0))
        return results

    def generate_with_confidence(self, queries: Sequence[str]) -> list[tuple[str, float]]:
        """Greedy rewrite of each LM input with its confidence: the probability of its least likely token."""
        results: list[tuple[str, float]] = []
        for start in range(0, len(queries), self.batch_size):
            chunk = list(queries[start : start + self.batch_size])
            for query, (tokens, low) in zip(chunk, self._greedy_with_lowest_log_prob(chunk)):
                results.append((self._text(tokens, query), math.exp(low)))
        return results

    def rewrite(self, queries: Sequence[str], num_return: int = 1, do_sample: bool = False) -> list[list[str]]:
        """``num_return`` rewrites per query, as :meth:`CausalRewriter.rewrite` gives them."""
        if num_return < 1:
            raise ValueError(f"num_return must be at least 1, got {num_return}")
        if self.needs_serve_choice(num_return, do_sample):
            return [[text] for text in self.served_rewrites(queries)]
        if num_return == 1 and not do_sample:  # greedy: the path that honours each query's token budget
            return [[text] for text, _ in self.rewrite_with_confidence(queries)]
        queries = self.lm_inputs(queries)
        if do_sample:
            options: dict[str, Any] = dict(
                sampling_topk=0, sampling_topp=self.top_p, sampling_temperature=self.temperature
            )
            prompts_per_query = num_return  # CTranslate2 samples one hypothesis per input
        else:
            options = dict(beam_size=num_return, num_hypotheses=num_return)
            prompts_per_query = 1

        results: list[list[str]] = []
        for start in range(0, len(queries), self.batch_size):
            chunk = list(queries[start : start + self.batch_size])
            prompts = [p for p in self._prompts(chunk) for _ in range(prompts_per_query)]
            generated = self._generate(prompts, max_length=self.max_new_tokens, **options)
            for row, query in enumerate(chunk):
                if do_sample:
                    sequences = [g.sequences[0] for g in generated[row * num_return : (row + 1) * num_return]]
                else:
                    sequences = generated[row].sequences
                results.append([self._text(tokens, query) for tokens in sequences])
        return results
