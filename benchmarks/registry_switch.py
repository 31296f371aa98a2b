"""How soon a promotion and a rollback reach served responses, and whether any request fails meanwhile.

One real model server (KServe over HTTP) follows the ``production`` stage of a rewriter in the real
S3 registry (embedded SeaweedFS, started for the run in a temporary state directory) while client
threads post queries without pause. Each cycle registers a new version, promotes it (the server
downloads, loads and warms it up beside the serving one) and rolls it back (the server switches to
the version it kept in memory, the standby). For every switch it records, from the instant the
pointer write completed (``promote``/``rollback`` returned):

- ``visible_s``: the first response that names the new version;
- ``last_old_start_s``: the latest start of a request that was still answered by the old version
  (every request started later got the new one);
- ``switch_s``: the server's own figure (``minielm_model_switch_seconds``: pointer read, load, warm-up);
- ``within_bound``: ``last_old_start_s <= registry_poll_s + switch_s``, the documented guarantee.

The model is a real :class:`~minielm.models.rewriter.CausalRewriter` with random weights at the
student shape in ``settings.distill``, exported to CTranslate2 as registration does (the load time
of a real student); ``--model standin`` uses a word-table rewriter instead (load time near zero).

    .venv/bin/python benchmarks/registry_switch.py                 # writes results/registry_switch.json
    .venv/bin/python benchmarks/registry_switch.py --cycles 3 --poll-s 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

QUERY = "wireles hedphones"


class Traffic:
    """Client threads posting one query after another; each result is (sent, received, status, version)."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.results: list[tuple[float, float, int, str | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post(self.url, json={"instances": [{"query": QUERY}]})
                    status = response.status_code
                    version = response.json().get("model_version") if status == 200 else None
                except httpx.HTTPError:
                    status, version = 0, None
                with self._lock:
                    self.results.append((sent, time.monotonic(), status, version))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def snapshot(self) -> list[tuple[float, float, int, str | None]]:
        with self._lock:
            return list(self.results)


def _switch_seconds(url: str, name: str) -> float:
    import httpx

    prefix = f'minielm_model_switch_seconds{{model="{name}"}} '
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return float(next(line for line in lines if line.startswith(prefix))[len(prefix) :])


def _measure_switch(traffic: Traffic, written_at: float, old: str, new: str, timeout_s: float) -> dict:
    """Wait until a request started after the write is answered by ``new``; then time the switch."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(sent > written_at and version == new for sent, _, _, version in traffic.snapshot()):
            break
        time.sleep(0.02)
    else:
        raise RuntimeError(f"version {new} not served within {timeout_s} s of the pointer write")
    time.sleep(0.3)  # let the requests in flight at the switch finish
    results = [r for r in traffic.snapshot() if r[1] > written_at]
    visible = min(received for _, received, _, version in results if version == new)
    old_starts = [sent for sent, _, _, version in results if version == old]
    return {
        "visible_s": visible - written_at,
        "last_old_start_s": (max(old_starts) - written_at) if old_starts else None,
    }


def _stats(values: list[float]) -> dict:
    return {
        "count": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def _save_standin(directory: Path) -> Path:
    spec = importlib.util.spec_from_file_location("serving_standins", REPO_ROOT / "tests" / "serving_standins.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_standins"] = module
    spec.loader.exec_module(module)
    return module.SpellingRewriter(module.SPELLING).save(directory, model_class="serving_standins:SpellingRewriter")


def _save_student(directory: Path, settings) -> Path:
    """The random-weight student of benchmarks/serving.py (same shape and CTranslate2 export)."""
    spec = importlib.util.spec_from_file_location("bench_serving", REPO_ROOT / "benchmarks" / "serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    student = settings.distill.rewriter
    shape = {
        **module.TEACHER_SHAPE,
        "num_hidden_layers": student.num_layers,
        **{
            key: getattr(student, key)
            for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
            if getattr(student, key) is not None
        },
    }
    return module.save_random_causal_rewriter(directory, shape, 12, settings.teachers.models_cache_dir)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10, help="promotion + rollback pairs")
    parser.add_argument("--poll-s", type=float, default=0.25, help="serving.registry_poll_s")
    parser.add_argument("--concurrency", type=int, default=2, help="client threads posting without pause")
    parser.add_argument("--model", choices=["student", "standin"], default="student")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "registry_switch.json")
    args = parser.parse_args(argv)

    from minielm.config import load_settings
    from minielm.registry import ModelRegistry
    from minielm.services import running_services
    from minielm.storage import ObjectStore
    from serving.app import build_stack, serve_stack

    load_at_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="minielm-bench-switch-"))
    settings = load_settings(overrides=[f"paths.state_dir={workdir / 'state'}"], environ={})
    if args.model == "standin":
        saved, metadata = _save_standin(workdir / "model"), {"model_class": "serving_standins:SpellingRewriter"}
    else:
        saved, metadata = _save_student(workdir / "model", settings), {}
    model_mb = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file()) / 2**20
    name = f"switch-bench-{uuid.uuid4().hex[:6]}"
    rows: list[dict] = []
    with running_services(settings, data_dir=workdir / "services") as live:
        registry = ModelRegistry(ObjectStore(live.s3))
        base = registry.register(name, saved, metadata, version="v0").version
        registry.promote(name, base, "production")
        serve_settings = live.model_copy(deep=True)
        serve_settings.paths.models_dir = workdir / "models"
        serve_settings.models.student_rewriter = name
        serve_settings.serving.enable_feast = False
        serve_settings.serving.log_rewrites = False
        serve_settings.serving.registry_poll_s = args.poll_s
        running = serve_stack(build_stack(serve_settings, with_relevance=False, with_pipeline=False), serve_settings, 0)
        traffic = Traffic(f"{running.url}/v1/models/{name}:predict", args.concurrency)
        traffic.start()
        try:
            for cycle in range(1, args.cycles + 1):
                version = registry.register(name, saved, metadata, version=f"v{cycle}").version
                for kind, old, new, move in (
                    ("promotion", base, version, lambda v=version: registry.promote(name, v, "production")),
                    ("rollback", version, base, lambda: registry.rollback(name, "production")),
                ):
                    started = time.monotonic()
                    move()
                    written_at = time.monotonic()
                    row = {"cycle": cycle, "kind": kind, "version": new, "write_s": written_at - started}
                    row.update(_measure_switch(traffic, written_at, old, new, timeout_s=120))
                    row["switch_s"] = _switch_seconds(running.url, name)
                    row["bound_s"] = args.poll_s + row["switch_s"]
                    row["within_bound"] = row["last_old_start_s"] is None or row["last_old_start_s"] <= row["bound_s"]
                    rows.append(row)
                    last_old = row["last_old_start_s"]
                    print(
                        f"{kind:<9} {new:<4} visible {row['visible_s']:.3f} s, last old start "
                        f"{'-' if last_old is None else f'{last_old:.3f}'} s, switch {row['switch_s']:.3f} s, "
                        f"bound {row['bound_s']:.3f} s"
                    )
        finally:
            traffic.stop()
            running.stop()
    results = traffic.snapshot()
    summary = {
        kind: {
            "visible_s": _stats([r["visible_s"] for r in rows if r["kind"] == kind]),
            "switch_s": _stats([r["switch_s"] for r in rows if r["kind"] == kind]),
            "within_bound": sum(r["within_bound"] for r in rows if r["kind"] == kind),
            "switches": sum(r["kind"] == kind for r in rows),
        }
        for kind in ("promotion", "rollback")
    }
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "load_avg_start": load_at_start,
        "load_avg_end": os.getloadavg(),
        "platform": platform.platform(),
        "model": args.model,
        "model_mb": round(model_mb, 1),
        "poll_s": args.poll_s,
        "concurrency": args.concurrency,
        "requests": len(results),
        "failed_requests": sum(status != 200 for _, _, status, _ in results),
        "summary": summary,
        "switches": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for kind, figures in summary.items():
        visible = figures["visible_s"]
        print(
            f"{kind}: {figures['switches']} switches, visible after min/median/max "
            f"{visible['min']:.3f}/{visible['median']:.3f}/{visible['max']:.3f} s, "
            f"switch median {figures['switch_s']['median']:.3f} s, within poll + switch: "
            f"{figures['within_bound']}/{figures['switches']}"
        )
    print(f"{report['requests']} requests, {report['failed_requests']} failed; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
