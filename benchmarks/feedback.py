"""Feedback aggregator figures on the embedded Kafka (Tansu) and S3 (SeaweedFS): throughput, scale, freshness.

Each run gets its own topics, consumer group and S3 prefixes; every request is one served rewrite and two
feedback events (an impression and a click), so ``events = 3 x requests``. Producers and aggregator members
run in their own processes (as serving pods and aggregator replicas do), so none shares a GIL with another.

1. catch-up: the topics are filled first; then 1 or 2 members of one group read, join, write the windows to
   S3 and commit. events/s from the first record any member read until the last commit of the last member
   to drain (so the last windows' writes count);
2. end to end: the members are up first; ``--producers`` processes send the requests and their feedback
   (pre-encoded JSON, librdkafka in a tight loop, so that the producer is not the limit); events/s from the
   first send until the members' last commit after reading everything;
3. exactly once: after each run every request must be in exactly one window row on S3 and every feedback
   event in a row or the late table (``exactly_once`` in the JSON, with the counts);
4. freshness: with background traffic, a probe event for a new query is produced and the Feast online store
   is polled until the query's ``volume`` shows it; p50/p99 of that delay.

    .venv/bin/python benchmarks/feedback.py                                  # 10k/100k/1M events, 1 and 2 members
    .venv/bin/python benchmarks/feedback.py --events 30000 --members 1 --probes 20

Targets from issue 20: catch-up >= 100,000 events/s, end to end >= 50,000 events/s, freshness p99 < 5 s, all
events in exactly one window. Timings on a shared machine are inflated by other work: the JSON records the
load average at the start and the end, and ratios measured in one run are what compare.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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
EVENTS_PER_REQUEST = 3  # the served rewrite, an impression and a click
QUERIES = 500


def settings_payload(settings) -> dict:
    """Settings as plain data a child process can validate again (secrets included: local servers only)."""
    data = settings.model_dump(mode="json")
    data["s3"]["access_key_id"] = settings.s3.access_key_id.get_secret_value()
    data["s3"]["secret_access_key"] = settings.s3.secret_access_key.get_secret_value()
    return data


def isolated(live, tag: str, **feedback):
    """Settings with their own topics (created with the configured partitions), group and S3 prefixes."""
    from confluent_kafka.admin import AdminClient, NewTopic

    settings = live.model_copy(deep=True)
    topics = settings.kafka.topics
    topics.rewrites, topics.feedback, topics.dead_letter = f"{tag}.rewrites", f"{tag}.feedback", f"{tag}.dlq"
    settings.kafka.consumer_group = f"{tag}-aggregator"
    settings.feedback.windows_prefix = f"bench/{tag}/feedback/windows"
    settings.feedback.late_prefix = f"bench/{tag}/feedback/late"
    settings.feedback.state_prefix = f"bench/{tag}/feedback/state"
    for name, value in feedback.items():
        setattr(settings.feedback, name, value)
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    created = admin.create_topics(
        [NewTopic(t, num_partitions=settings.kafka.partitions, replication_factor=1) for t in topics.all()]
    )
    for future in created.values():
        future.result(30)  # the admin client must outlive its futures
    return settings


# Pre-encoded events (what serving's request log and the shop front end send): only the ids, the query and
# the timestamp are filled in per request, so the producer's own Python work is a few bytes formats.
SERVED_JSON = (
    b'{"schema_version":1,"event_type":"served_rewrite","request_id":"r%d","query":"bench query %d",'
    b'"rewrite":"bench query %d","model_name":"bench","model_version":"1","product_ids":["p1","p2","p3"],"ts":%.6f}'
)
FEEDBACK_JSON = (
    b'{"schema_version":1,"event_type":"%s","request_id":"r%d","query":"bench query %d","product_id":"p1",'
    b'"position":0,"ts":%.6f}'
)


def produce(payload: dict, n_requests: int, share: int = 0, shares: int = 1) -> tuple[float, float]:
    """Send requests ``share``, ``share + shares``, ... of ``n_requests`` and their feedback with the aggregator's
    own producer settings: (epoch time of the first send, seconds until the last is acknowledged)."""
    from minielm.config import Settings
    from minielm.kafka_io import make_rdkafka_producer

    settings = Settings.model_validate(payload)
    topics = settings.kafka.topics
    rewrites, feedback = topics.rewrites, topics.feedback
    producer = make_rdkafka_producer(settings.kafka, {"linger.ms": 20, "batch.size": 512 * 1024})
    send, poll = producer.produce, producer.poll
    first_send_at, started = time.time(), time.perf_counter()
    for i in range(share, n_requests, shares):
        now = time.time()
        key, query = b"r%d" % i, i % QUERIES
        for topic, value in (
            (rewrites, SERVED_JSON % (i, query, query, now)),
            (feedback, FEEDBACK_JSON % (b"impression", i, query, now)),
            (feedback, FEEDBACK_JSON % (b"click", i, query, now)),
        ):
            while True:
                try:
                    send(topic, value, key)
                    break
                except BufferError:
                    poll(0.05)
        if i % 4096 < shares:
            poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} events not acknowledged by the broker")
    return first_send_at, time.perf_counter() - started


def _producer_process(payload: dict, n_requests: int, share: int, shares: int, results) -> None:
    first_send_at, seconds = produce(payload, n_requests, share, shares)
    results.put(("producer", {"first_send_at": first_send_at, "seconds": seconds}))


def produce_in_parallel(payload: dict, n_requests: int, producers: int, results=None) -> list:
    """``producers`` processes, each sending its share of the requests; with ``results`` the caller collects
    their reports, otherwise this waits and returns them."""
    context = mp.get_context("spawn")
    queue = results if results is not None else context.Queue()
    processes = [
        context.Process(target=_producer_process, args=(payload, n_requests, k, producers, queue))
        for k in range(producers)
    ]
    for process in processes:
        process.start()
    if results is not None:
        return processes
    reports = [queue.get(timeout=900)[1] for _ in processes]
    for process in processes:
        process.join(60)
    return reports


def produce_span(reports: list[dict]) -> tuple[float, float]:
    """(first send of any producer, seconds until the last producer's last acknowledgement)."""
    began = min(r["first_send_at"] for r in reports)
    return began, max(r["first_send_at"] + r["seconds"] for r in reports) - began


def _member_process(payload: dict, index: int, progress, stop, results) -> None:
    """One aggregator member: reports events read so far (its partitions' positions) until told to stop."""
    from minielm.config import Settings
    from minielm.feedback.aggregator import Aggregator
    from minielm.logs import configure_logging
    from minielm.storage import ObjectStore

    configure_logging("warning")
    settings = Settings.model_validate(payload)
    aggregator = Aggregator(settings, store=ObjectStore(settings.s3), sink=None)
    marks: dict = {}

    def on_progress(stats) -> None:
        if stats.consumed and "first_record_at" not in marks:
            marks["first_record_at"] = time.time()
        if aggregator.joins and "assigned_at" not in marks:
            marks["assigned_at"] = time.time()
        if aggregator.joins:
            progress[index] = sum(j.rewrites_next + j.feedback_next for j in aggregator.joins.values())
        if stop.is_set():
            aggregator.stop()

    stats = aggregator.run(on_progress=on_progress, max_seconds=900)
    # The end of its work is its last commit (windows on S3), not the group leave that follows.
    marks["finished_at"] = aggregator.metrics.registry.get_sample_value(
        "minielm_aggregator_last_commit_timestamp_seconds"
    )
    counts = {k: v for k, v in vars(stats).items() if k != "window_keys"}
    results.put(("member", {**marks, **counts}))


def exactly_once(store, settings, n_requests: int) -> dict:
    """Every request in exactly one window row, every feedback event in a row or in the late table."""
    from minielm.feedback.windows import list_windows, read_late_events, read_windows

    windows = read_windows(store, list_windows(store, prefix=settings.feedback.windows_prefix))
    late = read_late_events(store, prefix=settings.feedback.late_prefix)
    ids = windows["request_id"]
    joined = int(windows["feedback_events"].sum()) if len(windows) else 0
    feedback = n_requests * (EVENTS_PER_REQUEST - 1)
    return {
        "window_rows": len(windows),
        "duplicate_rows": int(ids.duplicated().sum()),
        "missing_requests": n_requests - int(ids.nunique()),
        "feedback_joined": joined,
        "feedback_late": len(late),
        "ok": len(windows) == n_requests == ids.nunique() and joined + len(late) == feedback,
    }


def run_members(live, store, n_events: int, members: int, live_traffic: bool, producers: int = 2) -> dict:
    """Catch-up (``live_traffic=False``: topics filled first) or end to end (a producer runs meanwhile)."""
    n_requests = n_events // EVENTS_PER_REQUEST
    kind = "e2e" if live_traffic else "catchup"
    settings = isolated(live, f"{kind}{members}m{time.time_ns()}", push_to_feast=False, window_s=2.0, grace_s=1.0)
    payload = settings_payload(settings)
    context = mp.get_context("spawn")
    results, stop = context.Queue(), context.Event()
    progress = context.Array("q", [-1] * members)  # events read by each member; -1 until it owns partitions
    produce_s = None
    if not live_traffic:
        _, produce_s = produce_span(produce_in_parallel(payload, n_requests, producers))
    workers = [
        context.Process(target=_member_process, args=(payload, i, progress, stop, results)) for i in range(members)
    ]
    for worker in workers:
        worker.start()
    producing = []
    if live_traffic:
        deadline = time.monotonic() + 120
        while min(progress[:]) < 0:  # every member owns partitions: the group has settled
            if time.monotonic() > deadline:
                raise RuntimeError("aggregator members did not join the group within 120 s")
            time.sleep(0.2)
        producing = produce_in_parallel(payload, n_requests, producers, results)
    total = n_requests * EVENTS_PER_REQUEST
    deadline = time.monotonic() + 900
    while sum(max(n, 0) for n in progress[:]) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reports = [results.get(timeout=300) for _ in range(members + len(producing))]
    for process in [*workers, *producing]:
        process.join(60)
    member_reports = [r for who, r in reports if who == "member"]
    if live_traffic:
        began, produce_s = produce_span([r for who, r in reports if who == "producer"])
    else:
        began = min(r["first_record_at"] for r in member_reports if "first_record_at" in r)
    seconds = max(r["finished_at"] for r in member_reports if r["finished_at"]) - began
    return {
        "mode": "end_to_end" if live_traffic else "catch_up",
        "members": members,
        "events": total,
        "requests": n_requests,
        "seconds": round(seconds, 2),
        "events_per_s": round(total / seconds),
        "producers": producers,
        "produce_events_per_s": round(total / produce_s),
        "per_member": [
            {k: r[k] for k in ("consumed", "served", "feedback", "windows_written", "late_written", "commits")}
            for r in member_reports
        ],
        "exactly_once": exactly_once(store, settings, n_requests),
    }


def freshness(live, store, probes: int, background_rate: float, workdir: Path) -> dict:
    from minielm.features.keys import query_key
    from minielm.features.repo import QUERY_STATS_VIEW, apply_repo, feature_store
    from minielm.feedback.aggregator import Aggregator
    from minielm.feedback.events import ServedRewrite
    from minielm.feedback.query_stats import FeastQueryStatsSink
    from minielm.feedback.simulator import RateLimiter
    from minielm.kafka_io import make_rdkafka_producer

    settings = isolated(live, f"fresh{time.time_ns()}", push_to_feast=True)
    settings.feast.repo_path = workdir / "feature_repo"
    apply_repo(settings)
    aggregator = Aggregator(settings, store=store, sink=FeastQueryStatsSink(settings))
    thread = threading.Thread(target=aggregator.run, kwargs={"max_seconds": 900}, daemon=True)
    thread.start()
    while not aggregator.joins:
        time.sleep(0.1)
    reader = feature_store(settings)
    producer = make_rdkafka_producer(settings.kafka, {"linger.ms": 0})
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
            producer.produce(topic, key=event.request_id.encode(), value=event.to_bytes())
            producer.poll(0)
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
            producer.produce(topic, key=event.request_id.encode(), value=event.to_bytes())
            producer.flush(10)
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
        producer.flush(10)
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
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2], help="aggregator processes in the group")
    parser.add_argument("--producers", type=int, default=2, help="producer processes sending the events")
    parser.add_argument("--probes", type=int, default=100, help="freshness probes (0: skip)")
    parser.add_argument("--background-rate", type=float, default=200.0, help="requests/s during the probes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")

    from minielm.config import load_settings
    from minielm.logs import configure_logging
    from minielm.services import running_services
    from minielm.storage import ObjectStore

    configure_logging("warning")
    results: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "cores shared with other work: compare ratios within this file",
        },
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="minielm-bench-feedback-") as workdir:
        settings = load_settings(overrides=[f"paths.state_dir={workdir}/state"], environ={})
        with running_services(settings) as live:
            store = ObjectStore(live.s3)
            results["partitions"] = live.kafka.partitions
            for n_events in args.events:
                for members in args.members:
                    for live_traffic in (False, True):
                        run = run_members(live, store, n_events, members, live_traffic, args.producers)
                        run["load_average"] = [round(x, 2) for x in os.getloadavg()]
                        results["runs"].append(run)
                        print(json.dumps(run), flush=True)
            if args.probes:
                print("freshness (event -> Feast online) ...", flush=True)
                results["freshness"] = freshness(live, store, args.probes, args.background_rate, Path(workdir))
                print(json.dumps(results["freshness"]), flush=True)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    best = {
        mode: max((r["events_per_s"] for r in results["runs"] if r["mode"] == mode), default=0)
        for mode in ("catch_up", "end_to_end")
    }
    results["targets"] = {
        "catch_up_events_per_s": 100_000,
        "end_to_end_events_per_s": 50_000,
        "freshness_p99_s": 5.0,
        "best_catch_up_events_per_s": best["catch_up"],
        "best_end_to_end_events_per_s": best["end_to_end"],
        "catch_up_met": best["catch_up"] >= 100_000,
        "end_to_end_met": best["end_to_end"] >= 50_000,
        "freshness_met": results.get("freshness", {}).get("p99_s", float("inf")) < 5.0,
        "exactly_once_every_run": all(r["exactly_once"]["ok"] for r in results["runs"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["targets"], indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
