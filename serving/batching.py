"""Concurrent rewrite requests that arrive within a short window run as one model batch.

Each request's inference runs on an executor thread. The first thread to take the model lock waits
``window_s`` for company, then runs every pending call for the same model and ``num_return`` (up to
``max_queries`` queries) as one batch, and hands each caller its own rows. Batched generation costs
little more than one query on CPU, so throughput grows with concurrency instead of queueing. A caller
that is alone in the batcher does not wait: with no other request in flight nobody is likely to join,
and the window would only add to its latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.metrics import GENERATION_BATCH_QUERIES

Rows = list[list[tuple[str, float | None]]]


@dataclass(eq=False)
class _Call:
    model: Any
    queries: list[str]
    num_return: int
    done: threading.Event = field(default_factory=threading.Event)
    rows: Rows | None = None
    error: BaseException | None = None


class RewriteBatcher:
    """``batcher(model, queries, num_return)`` returns what ``rewrite(model, queries, num_return)`` would."""

    def __init__(self, rewrite: Callable[[Any, list[str], int], Rows], window_s: float, max_queries: int) -> None:
        self._rewrite = rewrite
        self.window_s = window_s
        self.max_queries = max_queries
        self._pending: list[_Call] = []
        self._pending_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._callers = 0  # threads inside __call__ (guarded by _pending_lock)

    def __call__(self, model: Any, queries: Sequence[str], num_return: int) -> Rows:
        if self.window_s <= 0:
            GENERATION_BATCH_QUERIES.observe(len(queries))
            return self._rewrite(model, list(queries), num_return)
        call = _Call(model, list(queries), num_return)
        with self._pending_lock:
            self._pending.append(call)
            self._callers += 1
        try:
            while not call.done.is_set():
                with self._model_lock:
                    if call.done.is_set():
                        break
                    if self._has_company():
                        time.sleep(self.window_s)
                    self._run(self._take(call))
        finally:
            with self._pending_lock:
                self._callers -= 1
        if call.error is not None:
            raise call.error
        return call.rows

    def _has_company(self) -> bool:
        with self._pending_lock:
            return self._callers > 1

    def _take(self, leader: _Call) -> list[_Call]:
        """The leader plus the pending calls it can share a batch with, oldest first."""
        with self._pending_lock:
            self._pending.remove(leader)
            batch, rest, size = [leader], [], len(leader.queries)
            for call in self._pending:
                compatible = call.model is leader.model and call.num_return == leader.num_return
                if compatible and size + len(call.queries) <= self.max_queries:
                    batch.append(call)
                    size += len(call.queries)
                else:
                    rest.append(call)
            self._pending = rest
        return batch

    def _run(self, batch: list[_Call]) -> None:
        queries = [q for call in batch for q in call.queries]
        GENERATION_BATCH_QUERIES.observe(len(queries))
        try:
            rows = self._rewrite(batch[0].model, queries, batch[0].num_return)
        except BaseException as error:  # every caller in the batch sees the model's error
            for call in batch:
                call.error = error
                call.done.set()
            return
        start = 0
        for call in batch:
            call.rows = rows[start : start + len(call.queries)]
            start += len(call.queries)
            call.done.set()
