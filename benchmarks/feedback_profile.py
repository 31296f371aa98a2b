"""Where the feedback aggregator's time goes: one catch-up on the embedded Kafka and S3, under cProfile.

Fills fresh topics (``--events``, 3 per request), then runs one aggregator member in this process until it
has read everything, drained and committed; prints the wall rate, the CPU time per event (the process's
CPU seconds, librdkafka's threads included: far less sensitive to other load than wall time), the
exactly-once check and the top functions by own time and by cumulative time.

    .venv/bin/python benchmarks/feedback_profile.py --events 300000
    .venv/bin/python benchmarks/feedback_profile.py --events 300000 --no-profile   # the rate without cProfile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--top", type=int, default=25, help="functions listed per ordering")
    parser.add_argument("--no-profile", action="store_true", help="measure the rate without cProfile")
    args = parser.parse_args()

    import feedback as bench

    from minielm.config import load_settings
    from minielm.feedback.aggregator import Aggregator
    from minielm.logs import configure_logging
    from minielm.services import running_services
    from minielm.storage import ObjectStore

    configure_logging("warning")
    load_start = os.getloadavg()
    n_requests = args.events // bench.EVENTS_PER_REQUEST
    total = n_requests * bench.EVENTS_PER_REQUEST
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="minielm-profile-feedback-") as workdir:
        with running_services(load_settings(overrides=[f"paths.state_dir={workdir}/state"], environ={})) as live:
            store = ObjectStore(live.s3)
            settings = bench.isolated(live, f"profile{time.time_ns()}", push_to_feast=False, window_s=2.0, grace_s=1.0)
            bench.produce_in_parallel(bench.settings_payload(settings), n_requests, producers=2)
            aggregator = Aggregator(settings, store=store, sink=None)
            marks: dict = {}

            def progress(stats) -> None:
                if stats.consumed and "first" not in marks:
                    marks["first"] = time.perf_counter()
                if sum(j.rewrites_next + j.feedback_next for j in aggregator.joins.values()) >= total:
                    aggregator.stop()

            cpu_started = time.process_time()
            if not args.no_profile:
                profiler.enable()
            stats = aggregator.run(on_progress=progress, max_seconds=900)
            profiler.disable()
            cpu_s = time.process_time() - cpu_started
            seconds = time.perf_counter() - marks["first"]
            check = bench.exactly_once(store, settings, n_requests)
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "events": total,
        "profiled": not args.no_profile,
        "seconds_from_first_record": round(seconds, 2),
        "events_per_s": round(total / seconds),
        "cpu_us_per_event": round(cpu_s / total * 1e6, 2),
        "cpu_events_per_s": round(total / cpu_s),
        "windows": stats.windows_written,
        "exactly_once": check,
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary, indent=2))
    if not args.no_profile:
        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(args.top)
            print(text.getvalue())


if __name__ == "__main__":
    main()
