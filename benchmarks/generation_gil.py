"""Served rewrites in batches while another Python thread is busy, at several GIL switch intervals (issue 20).

In the server, CTranslate2 generates on a worker thread while the event loop (Python) serves HTTP. The worker
needs the GIL back several times per batch (tokenizing, reading the step logits, the guard), and Python hands it
over only every ``sys.getswitchinterval()``. This script sends batches of a split's queries through a saved
rewriter's served path (``rewrite``: front end, generation, threshold, guard), alone and beside a thread that spins
in Python, at each interval in ``--intervals-ms``, and reports the time per query and how much the busy thread got
done. ``serving.gil_switch_interval_ms`` is the server's setting.

    python benchmarks/generation_gil.py --model DIR --data DIR --out benchmarks/results/generation_gil.json
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def spin(stop: threading.Event, counter: list[int]) -> None:
    """Pure-Python work, as the event loop does between awaits."""
    while not stop.is_set():
        total = 0
        for i in range(1000):
            total += i
        counter[0] += 1


def per_query_ms(rewriter, batches: list[list[str]], busy: bool) -> tuple[float, float]:
    """Wall ms per query over ``batches``, and the busy thread's loops per second (0 without it)."""
    stop, counter = threading.Event(), [0]
    thread = threading.Thread(target=spin, args=(stop, counter), daemon=True) if busy else None
    if thread:
        thread.start()
    started = time.perf_counter()
    for batch in batches:
        rewriter.rewrite(batch)
    elapsed = time.perf_counter() - started
    stop.set()
    if thread:
        thread.join()
    return 1000 * elapsed / sum(len(b) for b in batches), counter[0] / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="saved rewriter dir (served through CTranslate2)")
    parser.add_argument("--data", type=Path, required=True, help="ESCI-format dir whose split's queries are sent")
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--intervals-ms", type=float, nargs="+", default=[5.0, 1.0, 0.2])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "generation_gil.json")
    args = parser.parse_args(argv)

    from benchmarks.report import machine_record, write_report
    from minielm.config import load_settings
    from minielm.data.esci import QUERY
    from minielm.models.loading import load_model_dir
    from minielm.teachers.data import load_teacher_data, split_examples

    load_at_start = os.getloadavg()
    settings = load_settings(environ={}, use_services_state=False)
    rewriter = load_model_dir(args.model, "rewriter", settings.serving)
    examples = split_examples(load_teacher_data(args.data), args.split, "benchmark")
    queries = list(dict.fromkeys(examples[QUERY].astype(str)))[: args.queries]
    batches = [queries[i : i + args.batch] for i in range(0, len(queries), args.batch)]
    rewriter.rewrite(batches[0])  # warm up
    default_interval = sys.getswitchinterval()
    runs = []
    try:
        for interval_ms in args.intervals_ms:
            sys.setswitchinterval(interval_ms / 1000)
            alone, _ = per_query_ms(rewriter, batches, busy=False)
            beside, loops = per_query_ms(rewriter, batches, busy=True)
            run = {
                "switch_interval_ms": interval_ms,
                "alone_ms_per_query": round(alone, 2),
                "beside_busy_thread_ms_per_query": round(beside, 2),
                "slowdown": round(beside / alone, 2),
                "busy_thread_loops_per_s": round(loops),
            }
            runs.append(run)
            print(run)
    finally:
        sys.setswitchinterval(default_interval)
    report = {
        "benchmark": "generation_gil",
        "command": "python benchmarks/generation_gil.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_record(load_at_start),
        "model": {"dir": str(args.model), "backend": type(rewriter).__name__},
        "queries": {"data": str(args.data), "split": args.split, "n": len(queries), "batch": args.batch},
        "runs": runs,
    }
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
