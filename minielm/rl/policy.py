"""A rewriter model directory as a batch function queries -> rewrites, for evaluation and canaries.

It is the serving rewriter (:class:`minielm.models.rewriter.CausalRewriter`, greedy, with the selective
``min_confidence`` threshold from the directory's metadata), so RL is judged as shoppers would see it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class DirRewriter:
    """Best rewrite per query from a saved rewriter directory (cached per query)."""

    def __init__(self, model_dir: Path, max_new_tokens: int) -> None:
        from minielm.models.rewriter import CausalRewriter

        self.model_dir = Path(model_dir)
        self.rewriter = CausalRewriter.load(self.model_dir, max_new_tokens=max_new_tokens)
        self.model, self.tokenizer = self.rewriter.model, self.rewriter.tokenizer
        self._cache: dict[str, str] = {}

    def __call__(self, queries: list[str]) -> list[str]:
        todo = sorted({q for q in queries if q not in self._cache})
        if todo:
            self._cache.update(zip(todo, (options[0] for options in self.rewriter.rewrite(todo))))
        return [self._cache[q] for q in queries]


RewriteFn = Callable[[list[str]], list[str]]
