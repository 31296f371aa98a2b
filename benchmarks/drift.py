"""Time the drift job on 10k and 100k served requests per window, query embeddings included.

For each size: two windows of simulated traffic over one synthetic catalog (the current one with 30%
of its queries in other languages, so the report has real failures to render), then the whole job
(features, embeddings of the sampled queries, the Evidently report, HTML/JSON/metrics written):

- ``cold``: nothing cached, both windows' samples are encoded;
- ``warm``: the scheduled job's usual case, the reference's vectors are already in the cache.

It also measures the encoder's throughput, to say what embedding every distinct query would cost.
Prints a table and writes ``benchmarks/results/drift.json``.

    .venv/bin/python benchmarks/drift.py                       # 10k and 100k
    .venv/bin/python benchmarks/drift.py --sizes 10000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "drift.json"


def measure(n_requests: int, dataset, settings, threads: int | None) -> dict:
    from minielm.drift import simulate
    from minielm.drift.embeddings import QueryEncoder, sample_positions
    from minielm.drift.job import run_drift_job
    from minielm.features.keys import normalize_query

    reference = simulate.served_requests(dataset, n_requests, seed=1)
    current = simulate.with_language_mix(simulate.served_requests(dataset, n_requests, seed=2), 0.3, seed=3)
    row: dict = {"n_requests": n_requests, "distinct_queries": int(current["query"].nunique())}
    config = settings.drift
    with tempfile.TemporaryDirectory() as workdir:
        encoder = QueryEncoder(config.embedding_model_path, config.embedding_batch_size, threads=threads)
        started = time.perf_counter()
        cold = run_drift_job(
            settings, reference=reference, current=current, use_windows=False, out_dir=Path(workdir), encoder=encoder
        )
        row["cold_s"] = time.perf_counter() - started
        # Warm: only the reference's vectors are kept, as in a scheduled run against a fixed reference.
        positions = sample_positions(len(reference), config.embedding_sample_size, settings.seed)
        keep = {normalize_query(q) for q in reference["query"].iloc[positions]}
        warm_encoder = QueryEncoder(config.embedding_model_path, config.embedding_batch_size, threads=threads)
        warm_encoder._cache = {k: v for k, v in encoder._cache.items() if k in keep}
        started = time.perf_counter()
        warm = run_drift_job(
            settings,
            reference=reference,
            current=current,
            use_windows=False,
            out_dir=Path(workdir),
            encoder=warm_encoder,
        )
        row["warm_s"] = time.perf_counter() - started
        row["html_mb"] = Path(warm.outputs["report_path"]).stat().st_size / 2**20
    row["status"] = cold.status
    row["drifted_checks"] = [c.name for c in cold.drifted]
    row["same_verdict_cold_and_warm"] = [c.status for c in cold.checks] == [c.status for c in warm.checks]
    return row


def encoder_throughput(queries: list[str], threads: int | None) -> float:
    from minielm.drift.embeddings import QueryEncoder

    encoder = QueryEncoder(threads=threads)
    encoder.encode(queries[:16])
    started = time.perf_counter()
    encoder.encode(queries[16:])
    return (len(queries) - 16) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, default=None, help="torch threads while encoding (default: torch's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    sys.path.insert(0, str(REPO))
    import torch

    from minielm.config import load_settings
    from minielm.data.synthetic import generate_dataset

    settings = load_settings(
        overrides=["drift.upload_report=false", "drift.embedding_cache=false"], environ={}, use_services_state=False
    )
    started = time.perf_counter()
    dataset = generate_dataset(n_products=5000, n_queries=20000, seed=0)
    generate_s = time.perf_counter() - started
    queries = dataset.examples["query"].drop_duplicates().tolist()[:528]
    report = {
        "command": "python benchmarks/drift.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": args.threads or torch.get_num_threads(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {
            "embedding_sample_size": settings.drift.embedding_sample_size,
            "embedding_method": settings.drift.embedding_method,
            "distribution_method": settings.drift.distribution_method,
        },
        "dataset": {"n_products": 5000, "n_queries": 20000, "generate_s": generate_s},
        "encoder_queries_per_s": encoder_throughput(queries, args.threads),
        "sizes": [],
    }
    for size in args.sizes:
        report["sizes"].append(measure(size, dataset, settings, args.threads))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    report["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2))
    rate = report["encoder_queries_per_s"]
    print(
        f"encoder: {rate:.0f} queries/s ({report['machine']['torch_threads']} torch threads, "
        f"load average {report['machine']['load_average_at_start'][0]:.1f})"
    )
    print(
        f"{'requests':>9} {'distinct':>9} {'cold s':>7} {'warm s':>7} {'html MB':>8}  status  "
        f"(embedding every distinct query instead would take ~s)"
    )
    for row in report["sizes"]:
        print(
            f"{row['n_requests']:>9} {row['distinct_queries']:>9} {row['cold_s']:>7.1f} {row['warm_s']:>7.1f} "
            f"{row['html_mb']:>8.1f}  {row['status']:<6}  ~{2 * row['distinct_queries'] / rate:.0f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
