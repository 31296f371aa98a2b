"""Feedback stream figures on the embedded Kafka (Tansu) and S3 (SeaweedFS): throughput and freshness.

1. throughput, end to end: a producer thread sends served rewrites and their feedback while one
   aggregator consumes, joins and writes the windows to S3; events/s from the first send until every
   event is in a window object (commit included);
2. throughput, aggregator only: the same aggregator on topics already filled (catch-up rate);
3. freshness: with background traffic flowing, a probe event for a new query is produced and the Feast
   online store is polled until the query's ``volume`` shows it; p50/p99 of that delay.

    .venv/bin/python benchmarks/feedback.py                  # defaults: 60k requests, 100 probes
    .venv/bin/python benchmarks/feedback.py --requests 20000 --probes 50

Targets from the issue: >= 50,000 events/s through the aggregator, freshness p99 < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_OUT = REPO / "benchmarks" / "results" / "feedback.json"
FEEDBACK_PER_REQUEST = 2  # an impression and a click per request: 3 events per request in all


def isolated(live, tag: str, **feedback):
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = live.model_copy(deep=True)
    topics = settings.kafka.topics
    topics.rewrites, topics.feedback, topics.dead_letter = f"{tag}.rewrites", f"{tag}.feedback", f"{tag}.dlq"
    settings.kafka.consumer_group = f"{tag}-aggregator"
    settings.feedback.windows_prefix = f"bench/{tag}/feedback/windows"
    settings.feedback.late_prefix = f"bench/{tag}/feedback/late"
    settings.feedback.state_prefix = f"bench/{tag}/feedback/state"
    for name, value in feedback.items():
        setattr(settings.feedback, name, value)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics(
        [NewTopic(t, num_partitions=settings.kafka.partitions, replication_factor=1) for t in topics.all()]
    )
    admin.close()
    return settings


def produce(settings, n_requests: int, query_prefix: str = "bench query") -> float:
    """Send n requests and their feedback; returns the seconds it took (flush included)."""
    from minielm.feedback.events import FeedbackEvent, ServedRewrite
    from minielm.kafka_io import make_producer

    producer = make_producer(
        settings.kafka, linger_ms=20, batch_size=256 * 1024, max_in_flight_requests_per_connection=5
    )
    topics = settings.kafka.topics
    started = time.perf_counter()
    for i in range(n_requests):
        now = time.time()
        rid = f"r{i}"
        key = rid.encode()
        query = f"{query_prefix} {i % 500}"
        producer.send(
            topics.rewrites,
            key=key,
            value=ServedRewrite(
                request_id=rid,
                query=query,
                rewrite=query,
                model_name="bench",
                model_version="1",
                product_ids=["p1", "p2", "p3"],
                ts=now,
            ).to_bytes(),
        )
        producer.send(
            topics.feedback,
            key=key,
            value=FeedbackEvent(
                event_type="impression", request_id=rid, query=query, product_id="p1", position=0, ts=now
            ).to_bytes(),
        )
        producer.send(
            topics.feedback,
            key=key,
            value=FeedbackEvent(
                event_type="click", request_id=rid, query=query, product_id="p1", position=0, ts=now
            ).to_bytes(),
        )
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def read_to(aggregator) -> int:
    """Events read so far, from the partitions' positions (a re-read after a rebalance is not counted twice)."""
    return sum(j.rewrites_next + j.feedback_next for j in aggregator.joins.values())


def count_rows(store, settings) -> tuple[int, int, int]:
    """(window rows, feedback events joined into them, feedback events in the late table) on S3."""
    from minielm.feedback.windows import list_windows, read_late_events, read_windows

    frame = read_windows(store, list_windows(store, prefix=settings.feedback.windows_prefix))
    late = read_late_events(store, prefix=settings.feedback.late_prefix)
    return len(frame), int(frame["feedback_events"].sum()) if len(frame) else 0, len(late)


def throughput_end_to_end(live, store, n_requests: int) -> dict:
    from minielm.feedback.aggregator import Aggregator

    settings = isolated(live, f"e2e{time.time_ns()}", push_to_feast=False, window_s=2.0, grace_s=1.0)
    aggregator = Aggregator(settings, store=store, sink=None)
    total = n_requests * (1 + FEEDBACK_PER_REQUEST)
    started = time.perf_counter()
    timings: dict = {}
    producer = threading.Thread(target=lambda: timings.update(produce_s=produce(settings, n_requests)))
    producer.start()

    def done(stats) -> None:
        if read_to(aggregator) >= total and not producer.is_alive():
            aggregator.stop()

    stats = aggregator.run(on_progress=done, max_seconds=600)
    elapsed = time.perf_counter() - started
    producer.join()
    rows, joined, late = count_rows(store, settings)
    return {
        "requests": n_requests,
        "events": total,
        "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed),
        "produce_s": round(timings["produce_s"], 2),
        "produce_events_per_s": round(total / timings["produce_s"]),
        "windows": stats.windows_written,
        "rows_on_s3": rows,
        "feedback_joined": joined,
        "feedback_late": late,
        "all_on_s3": rows == n_requests and joined + late == n_requests * FEEDBACK_PER_REQUEST,
    }


def throughput_catch_up(live, store, n_requests: int, check_crcs: bool = True) -> dict:
    from minielm.feedback.aggregator import Aggregator

    settings = isolated(
        live, f"catchup{time.time_ns()}", push_to_feast=False, window_s=2.0, grace_s=1.0, check_crcs=check_crcs
    )
    produce_s = produce(settings, n_requests)
    total = n_requests * (1 + FEEDBACK_PER_REQUEST)
    aggregator = Aggregator(settings, store=store, sink=None)
    marks: dict = {}

    def progress(stats) -> None:
        if stats.consumed and "first" not in marks:
            marks["first"] = time.perf_counter()
        if read_to(aggregator) >= total:
            aggregator.stop()

    stats = aggregator.run(on_progress=progress, max_seconds=600)
    elapsed = time.perf_counter() - marks["first"]
    rows, joined, late = count_rows(store, settings)
    return {
        "requests": n_requests,
        "events": total,
        "check_crcs": check_crcs,
        "seconds_from_first_record": round(elapsed, 2),
        "events_per_s": round(total / elapsed),
        "produce_events_per_s": round(total / produce_s),
        "windows": stats.windows_written,
        "rows_on_s3": rows,
        "feedback_joined": joined,
        "feedback_late": late,
        "all_on_s3": rows == n_requests and joined + late == n_requests * FEEDBACK_PER_REQUEST,
    }


def freshness(live, store, probes: int, background_rate: float, workdir: Path) -> dict:
    from minielm.features.keys import query_key
    from minielm.features.repo import QUERY_STATS_VIEW, apply_repo, feature_store
    from minielm.feedback.aggregator import Aggregator
    from minielm.feedback.events import ServedRewrite
    from minielm.feedback.query_stats import FeastQueryStatsSink
    from minielm.feedback.simulator import RateLimiter
    from minielm.kafka_io import make_producer

    settings = isolated(live, f"fresh{time.time_ns()}", push_to_feast=True)
    settings.feast.repo_path = workdir / "feature_repo"
    apply_repo(settings)
    aggregator = Aggregator(settings, store=store, sink=FeastQueryStatsSink(settings))
    thread = threading.Thread(target=aggregator.run, kwargs={"max_seconds": 900}, daemon=True)
    thread.start()
    while not aggregator.joins:
        time.sleep(0.1)
    reader = feature_store(settings)
    producer = make_producer(settings.kafka, linger_ms=0)
    topic = settings.kafka.topics.rewrites
    flowing = threading.Event()
    flowing.set()

    def background() -> None:
        limiter = RateLimiter(background_rate)
        i = 0
        while flowing.is_set():
            limiter.acquire()
            event = ServedRewrite(
                request_id=f"bg{i}",
                query=f"background {i % 200}",
                rewrite="x",
                model_name="b",
                model_version="1",
                product_ids=["p"],
                ts=time.time(),
            )
            producer.send(topic, key=event.request_id.encode(), value=event.to_bytes())
            i += 1

    traffic = threading.Thread(target=background, daemon=True)
    traffic.start()
    delays = []
    try:
        for n in range(probes):
            query = f"fresh probe {n} {time.time_ns()}"
            key = query_key(query)
            sent = time.time()
            event = ServedRewrite(
                request_id=f"probe{n}",
                query=query,
                rewrite=query,
                model_name="b",
                model_version="1",
                product_ids=[],
                ts=sent,
            )
            producer.send(topic, key=event.request_id.encode(), value=event.to_bytes())
            producer.flush()
            while True:
                values = reader.get_online_features(
                    features=[f"{QUERY_STATS_VIEW}:volume"], entity_rows=[{"query_key": key}]
                ).to_dict()
                if values["volume"][0]:
                    delays.append(time.time() - sent)
                    break
                if time.time() - sent > 30:
                    delays.append(float("inf"))
                    break
                time.sleep(0.01)
            time.sleep(0.05)
    finally:
        flowing.clear()
        traffic.join()
        producer.close()
        aggregator.stop()
        thread.join(60)
    ordered = sorted(delays)
    return {
        "probes": probes,
        "background_requests_per_s": background_rate,
        "push_interval_s": settings.feedback.push_interval_s,
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))], 3),
        "max_s": round(ordered[-1], 3),
        "pushes": aggregator.stats.pushes,
        "push_failures": aggregator.stats.push_failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60000, help="served requests (x3 events)")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--background-rate", type=float, default=200.0, help="requests/s during the probes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")

    from minielm.config import load_settings
    from minielm.logs import configure_logging
    from minielm.services import EmbeddedServices
    from minielm.storage import ObjectStore

    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="minielm-bench-feedback-") as workdir:
        settings = load_settings(overrides=[f"paths.state_dir={workdir}/state"], environ={})
        services = EmbeddedServices(settings)
        live = services.start()
        try:
            store = ObjectStore(live.s3)
            results = {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "note": "2 cores shared with other work",
                },
                "partitions": live.kafka.partitions,
                "aggregator_members": 1,
            }
            print("end-to-end throughput ...", flush=True)
            results["throughput_end_to_end"] = throughput_end_to_end(live, store, args.requests)
            print(json.dumps(results["throughput_end_to_end"]), flush=True)
            print("aggregator catch-up throughput ...", flush=True)
            results["throughput_catch_up"] = throughput_catch_up(live, store, args.requests)
            print(json.dumps(results["throughput_catch_up"]), flush=True)
            results["throughput_catch_up_no_crc"] = throughput_catch_up(live, store, args.requests, check_crcs=False)
            print(json.dumps(results["throughput_catch_up_no_crc"]), flush=True)
            print("freshness (event -> Feast online) ...", flush=True)
            results["freshness"] = freshness(live, store, args.probes, args.background_rate, Path(workdir))
            print(json.dumps(results["freshness"]), flush=True)
        finally:
            services.stop()
    results["targets"] = {
        "events_per_s": 50000,
        "freshness_p99_s": 5.0,
        "events_per_s_met": max(
            results["throughput_catch_up"]["events_per_s"], results["throughput_catch_up_no_crc"]["events_per_s"]
        )
        >= 50000,
        "freshness_met": results["freshness"]["p99_s"] < 5.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
