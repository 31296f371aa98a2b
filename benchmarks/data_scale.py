"""Time catalog generation, index build and batched BM25 retrieval at 10k, 100k and 1M products.

Each size runs in its own child process (clean peak-memory figure, and a killed 1M run does not
lose the smaller results); the JSON is rewritten after every size.

    .venv/bin/python benchmarks/data_scale.py                      # 10k, 100k, 1M
    .venv/bin/python benchmarks/data_scale.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "data_scale.json"


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def measure(n_products: int, n_queries: int, n_search: int, batch: int, k: int, seed: int) -> dict:
    """One size, in this process: generation, parquet write, index build/save/load, retrieval, quality."""
    sys.path.insert(0, str(REPO))
    from minielm.data.esci import write_esci
    from minielm.data.synthetic import generate_dataset
    from minielm.evaluation import compare_rewriters, oracle_queries, raw_queries
    from minielm.search import SearchIndex

    result: dict = {"n_products": n_products, "n_queries": n_queries}
    started = time.perf_counter()
    data = generate_dataset(n_products=n_products, n_queries=n_queries, seed=seed)
    result["generate_s"] = time.perf_counter() - started
    result["n_examples"] = len(data.examples)
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        write_esci(data, Path(workdir) / "data")
        result["write_parquet_s"] = time.perf_counter() - started
        result["parquet_mb"] = _dir_mb(Path(workdir) / "data")
        started = time.perf_counter()
        index = SearchIndex.build(data.products)
        result["index_build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        index.save(Path(workdir) / "index")
        result["index_save_s"] = time.perf_counter() - started
        result["index_mb"] = _dir_mb(Path(workdir) / "index")
        started = time.perf_counter()
        index = SearchIndex.load(Path(workdir) / "index")
        result["index_load_s"] = time.perf_counter() - started
    raw = raw_queries(data.examples)
    ids = list(raw)[:n_search]
    texts = [raw[q] for q in ids]
    started = time.perf_counter()
    for offset in range(0, len(texts), batch):
        index.search(texts[offset : offset + batch], k)
    elapsed = time.perf_counter() - started
    result.update(
        search_queries=len(texts),
        search_batch=batch,
        k=k,
        search_s=elapsed,
        search_qps=len(texts) / elapsed,
        search_ms_per_query=1000 * elapsed / len(texts),
    )
    subset = data.examples[data.examples["query_id"].isin(set(ids))]
    report = compare_rewriters(index, subset, {"raw": raw_queries(subset), "oracle": oracle_queries(subset)}, k)
    result["relevant_at_k"] = {name: m["relevant_per_query"] for name, m in report["systems"].items()}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _run_child(args, size: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--single",
        str(size),
        "--queries",
        str(args.queries),
        "--search-queries",
        str(args.search_queries),
        "--batch",
        str(args.batch),
        "--k",
        str(args.k),
        "--seed",
        str(args.seed),
    ]
    started = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "MINIELM_LOG_LEVEL": "warning"}
    )
    if completed.returncode != 0:
        return {"n_products": size, "error": completed.stderr[-2000:], "wall_s": time.perf_counter() - started}
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def table(rows: list[dict]) -> str:
    header = (
        f"{'products':>10} {'generate s':>10} {'parquet s':>9} {'index s':>8} {'index MB':>8} "
        f"{'search q/s':>10} {'ms/query':>8} {'raw@k':>6} {'oracle@k':>8} {'peak MB':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['n_products']:>10} failed after {r['wall_s']:.0f}s: {r['error'].splitlines()[-1:]}")
            continue
        lines.append(
            f"{r['n_products']:>10} {r['generate_s']:>10.1f} {r['write_parquet_s']:>9.1f} "
            f"{r['index_build_s']:>8.1f} {r['index_mb']:>8.1f} {r['search_qps']:>10.0f} "
            f"{r['search_ms_per_query']:>8.2f} {r['relevant_at_k']['raw']:>6.2f} "
            f"{r['relevant_at_k']['oracle']:>8.2f} {r['peak_rss_mb']:>8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=5000, help="queries generated (with judgments) per size")
    parser.add_argument("--search-queries", type=int, default=2000, help="raw queries retrieved per size")
    parser.add_argument("--batch", type=int, default=256, help="queries per search() call")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(args.single, args.queries, args.search_queries, args.batch, args.k, args.seed)))
        return
    rows = []
    meta = {
        "benchmark": "data_scale",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average_at_start": list(os.getloadavg()),
    }
    for size in args.sizes:
        print(f"measuring {size} products ...", flush=True)
        rows.append(_run_child(args, size))
        meta["load_average_at_end"] = list(os.getloadavg())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**meta, "results": rows}, indent=2))
        print(table(rows[-1:]), flush=True)
    print(table(rows))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
