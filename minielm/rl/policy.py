"""A rewriter model directory as a batch function queries -> rewrites, for evaluation and canaries.

Generation is greedy with the platform's one prompt format (``minielm.models.prompts``) and the
same post-processing the RL rewards use (first line of the completion)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from minielm.rl.trainer import PromptFn, default_prompt_fn, greedy_rewrites, load_tokenizer


class DirRewriter:
    """Greedy rewrites from a saved causal LM directory."""

    def __init__(self, model_dir: Path, max_new_tokens: int, prompt_fn: PromptFn | None = None) -> None:
        from transformers import AutoModelForCausalLM

        self.model_dir = Path(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), dtype=torch.float32).eval()
        self.prompt_fn = prompt_fn or default_prompt_fn()
        self.max_new_tokens = max_new_tokens
        self._cache: dict[str, str] = {}

    def __call__(self, queries: list[str]) -> list[str]:
        todo = sorted({q for q in queries if q not in self._cache})
        if todo:
            self._cache.update(zip(todo, greedy_rewrites(self.model, self.tokenizer, todo, self.prompt_fn,
                                                         self.max_new_tokens)))
        return [self._cache[q] for q in queries]


RewriteFn = Callable[[list[str]], list[str]]
