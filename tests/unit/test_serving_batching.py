"""The batching window: concurrent calls share model batches, each caller gets its own rows, errors reach all."""

from __future__ import annotations

import threading
import time

import pytest

import serving  # noqa: F401  (imports kserve with a clean argv)
from serving.batching import RewriteBatcher


class RecordingModel:
    def __init__(self, fail: bool = False, first_batch_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail
        self.first_batch_s = first_batch_s  # a slow first batch: the other callers arrive while it runs


def rewrite(model: RecordingModel, queries: list[str], num_return: int):
    if not model.batches:
        time.sleep(model.first_batch_s)
    model.batches.append(list(queries))
    if model.fail:
        raise RuntimeError("model broke")
    return [[(f"{q}#{i}", None) for i in range(num_return)] for q in queries]


def run_concurrently(batcher, calls):
    """Start every call at once (barrier), return each call's result or error in call order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(i, model, queries, num_return):
        barrier.wait()
        try:
            results[i] = batcher(model, queries, num_return)
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=worker, args=(i, *call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_calls_share_batches_and_get_their_own_rows():
    model = RecordingModel(first_batch_s=0.5)
    batcher = RewriteBatcher(rewrite, window_s=0.3, max_queries=64)
    calls = [(model, [f"q{i}", f"r{i}"], 1) for i in range(8)]
    results = run_concurrently(batcher, calls)
    for i, rows in enumerate(results):
        assert rows == [[(f"q{i}#0", None)], [(f"r{i}#0", None)]]
    assert len(model.batches) < 8  # calls that arrive while the model works share the next batch
    assert sorted(q for batch in model.batches for q in batch) == sorted(q for _, qs, _ in calls for q in qs)


def test_batches_never_mix_models_or_num_return_and_respect_the_size_limit():
    first, second = RecordingModel(), RecordingModel()
    batcher = RewriteBatcher(rewrite, window_s=0.2, max_queries=3)
    calls = [(first, ["a"], 1), (first, ["b"], 2), (second, ["c"], 1), (first, ["d", "e"], 1), (first, ["f"], 1)]
    results = run_concurrently(batcher, calls)
    assert results[1] == [[("b#0", None), ("b#1", None)]]
    assert results[2] == [[("c#0", None)]]
    assert results[3] == [[("d#0", None)], [("e#0", None)]]
    assert all(len(batch) <= 3 for batch in first.batches)
    assert second.batches == [["c"]]
    assert ["b"] in first.batches  # num_return=2 ran on its own


def test_a_model_error_reaches_every_caller_of_the_batch():
    model = RecordingModel(fail=True)
    batcher = RewriteBatcher(rewrite, window_s=0.2, max_queries=64)
    results = run_concurrently(batcher, [(model, [f"q{i}"], 1) for i in range(4)])
    assert all(isinstance(r, RuntimeError) and "model broke" in str(r) for r in results)


def test_zero_window_calls_the_model_directly():
    model = RecordingModel()
    batcher = RewriteBatcher(rewrite, window_s=0, max_queries=64)
    assert batcher(model, ["x"], 2) == [[("x#0", None), ("x#1", None)]]
    assert model.batches == [["x"]]
    with pytest.raises(RuntimeError):
        RewriteBatcher(rewrite, window_s=0, max_queries=1)(RecordingModel(fail=True), ["y"], 1)


def test_a_lone_caller_does_not_wait_for_the_window():
    model = RecordingModel()
    batcher = RewriteBatcher(rewrite, window_s=5.0, max_queries=64)
    started = time.monotonic()
    assert batcher(model, ["a"], 1) == [[("a#0", None)]]
    assert time.monotonic() - started < 2.5  # far below the 5 s window it would otherwise sleep
    assert model.batches == [["a"]]
