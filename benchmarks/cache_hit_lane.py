"""The cache-hit lane of one or more checkouts side by side, in one run (issue 20: cache hits <= 1 ms p99).

Each checkout (``--checkouts``: repository roots, e.g. an exported older commit and this one) serves the same student
(random weights at the ``settings.distill`` student shape, exported to CTranslate2) from its own process, with the
head-query rewrite cache warmed for ``benchmarks.serving.HEAD_QUERIES`` in one shared Feast repo. Only cached queries
are sent, with and without Feast features, at each concurrency; rounds alternate the checkouts so they share the
machine's load. Reported per checkout: the server-timing percentiles (``app``; ``read``, the wait for the client's
body; ``app - read``), the share answered from the cache, and server CPU per request (from ``/proc``).

    python benchmarks/cache_hit_lane.py --checkouts /tmp/old /path/to/repo   # writes results/cache_hit_lane.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def serve(checkout: str, settings_json: str, student_dir: str) -> None:
    """Server mode: the checkout's code (first on ``sys.path``) serves; print the URL, serve until stdin closes."""
    sys.path.insert(0, checkout)
    from benchmarks.serving import _warm_student_cache
    from minielm.config import Settings
    from serving.app import build_stack, serve_stack

    raw = json.loads(settings_json)
    for name, field in Settings.model_fields.items():  # settings an older checkout does not know are left out
        section = getattr(field.annotation, "model_fields", None)
        if section is not None and isinstance(raw.get(name), dict):
            raw[name] = {key: value for key, value in raw[name].items() if key in section}
    settings = Settings.model_validate({key: value for key, value in raw.items() if key in Settings.model_fields})
    settings.serving.rewriter_path = Path(student_dir)
    stack = build_stack(settings, with_relevance=False, with_pipeline=False)
    _warm_student_cache(settings, stack.models[0])
    running = serve_stack(stack, settings, port=0)
    print(running.url, flush=True)
    sys.stdin.read()
    running.stop()


async def hits(url: str, model: str, features: bool, concurrency: int, n: int, pid: int, client: str) -> dict:
    """``n`` requests for cached queries; the server-timing of each and the server's CPU over the run."""
    import httpx

    from benchmarks.serving import HEAD_QUERIES, OneWriteConnection, _cpu_seconds, _server_ms

    path = f"/v1/models/{model}:predict"
    app, read, cached = [], [], 0
    counter = iter(range(n))

    async def worker(post) -> None:
        nonlocal cached
        for i in counter:
            body = {"instances": [HEAD_QUERIES[i % len(HEAD_QUERIES)]], "parameters": {"features": features}}
            response = await post(body)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")
            cached += bool(response.json()["predictions"][0]["cached"])
            app.append(_server_ms(response))
            read.append(_server_ms(response, "read"))

    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as session:
            posts = [lambda body: session.post(path, json=body)] * concurrency
            cpu = await _run(posts, worker, pid, _cpu_seconds, app, read)
    else:
        connections = [await OneWriteConnection.open(url) for _ in range(concurrency)]
        try:
            posts = [lambda body, c=c: c.post(path, body) for c in connections]
            cpu = await _run(posts, worker, pid, _cpu_seconds, app, read)
        finally:
            for connection in connections:
                connection.close()
    return {"app": app, "read": read, "cached": cached, "cpu_s": cpu}


async def _run(posts, worker, pid: int, cpu_seconds, app: list, read: list) -> float:
    from benchmarks.serving import HEAD_QUERIES

    for query in HEAD_QUERIES:  # every head query through once, both memories filled
        for features in (False, True):
            await posts[0]({"instances": [query], "parameters": {"features": features}})
    app.clear(), read.clear()
    started = cpu_seconds(pid)
    await asyncio.gather(*(worker(post) for post in posts))
    return cpu_seconds(pid) - started


def percentiles(values: list[float]) -> dict[str, float] | None:
    """None where the checkout's server-timing has no such part (an older server has no ``read``)."""
    array = np.array(values, dtype=float)
    if np.isnan(array).all():
        return None
    return {f"p{q}_ms": round(float(np.nanpercentile(array, q)), 3) for q in (50, 90, 99)} | {
        "max_ms": round(float(np.nanmax(array)), 3)
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=Path, nargs="+", default=[REPO_ROOT], help="repository roots")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=600, help="per checkout, round, concurrency and feature mode")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--client", choices=("one-write", "httpx"), default="one-write", help="how each request is written"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cache_hit_lane.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.report import machine_record, write_report
    from benchmarks.serving import (
        _prepare_feast,
        bench_settings,
        distilled_student_shape,
        save_random_causal_rewriter,
    )

    load_at_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="minielm-bench-hit-lane-"))
    settings = bench_settings(workdir)
    shape = distilled_student_shape(settings.distill.rewriter)
    student = save_random_causal_rewriter(workdir / "student", shape, 12, settings.teachers.models_cache_dir)
    _prepare_feast(settings)
    servers = {}
    try:
        for checkout in args.checkouts:
            environ = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
            command = [sys.executable, __file__, "--serve", str(checkout), settings.model_dump_json(), str(student)]
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environ, cwd=checkout, text=True
            )
            url = process.stdout.readline().strip()
            if not url.startswith("http"):
                raise RuntimeError(f"{checkout}: the server did not start (see its log above)")
            servers[str(checkout)] = (process, url)
            print(f"{checkout}: serving on {url}", flush=True)
        samples: dict[tuple, dict] = {}
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for features in (False, True):
                    for checkout, (process, url) in servers.items():
                        run = asyncio.run(
                            hits(
                                url,
                                settings.models.student_rewriter,
                                features,
                                concurrency,
                                args.requests,
                                process.pid,
                                args.client,
                            )
                        )
                        total = samples.setdefault((checkout, concurrency, features), {"cpu_s": 0.0, "cached": 0})
                        for key in ("app", "read"):
                            total.setdefault(key, []).extend(run[key])
                        total["cpu_s"] += run["cpu_s"]
                        total["cached"] += run["cached"]
    finally:
        for process, _ in servers.values():
            process.stdin.close()
            process.wait(timeout=60)
    runs = []
    for (checkout, concurrency, features), total in samples.items():
        app, read = np.array(total["app"], dtype=float), np.array(total["read"], dtype=float)
        row = {
            "checkout": checkout,
            "concurrency": concurrency,
            "features": features,
            "requests": len(app),
            "cached_share": round(total["cached"] / len(app), 4),
            "server_cpu_ms_per_request": round(1000 * total["cpu_s"] / len(app), 3),
            "app": percentiles(app),
            "read": percentiles(read),
            "app_minus_read": percentiles(app - read),
        }
        runs.append(row)
        after_read = row["app_minus_read"] or {}
        print(
            f"{checkout} c={concurrency} features={features}: app p50/p99 {row['app']['p50_ms']}/"
            f"{row['app']['p99_ms']} ms, app-read p99 {after_read.get('p99_ms')} ms, "
            f"CPU {row['server_cpu_ms_per_request']} ms/req, cached {row['cached_share']:.0%}",
            flush=True,
        )
    report = {
        "benchmark": "cache_hit_lane",
        "command": "python benchmarks/cache_hit_lane.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_record(load_at_start),
        "student_shape": shape,
        "client": args.client,
        "runs": runs,
    }
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
