"""What on-call sees of the aggregator: its run's counters, Prometheus metrics and liveness/readiness over HTTP.

:class:`AggregatorMetrics` is the small interface the consumer loop reports through (events by type,
dead letters by kind, windows written, S3 retries and failures, lag per partition, the last commit and
the last loop turn), so the Kafka client underneath can change without touching it. Each aggregator
has its own registry; :class:`HealthServer` serves it on ``feedback.metrics_port``:

- ``/metrics``: the Prometheus text format;
- ``/healthz`` (liveness): 200 while the loop turned within ``feedback.stall_after_s``, else 503;
- ``/readyz`` (readiness): 200 once the loop runs and has partitions, else 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from minielm.logs import get_logger

log = get_logger(__name__)


@dataclass
class AggregatorStats:
    """What one run of the aggregator did (returned by ``Aggregator.run`` and shown by the CLI)."""

    consumed: int = 0
    served: int = 0
    feedback: int = 0
    dead_letters: int = 0
    windows_written: int = 0
    late_written: int = 0
    commits: int = 0
    s3_failures: int = 0
    pushes: int = 0
    push_failures: int = 0
    window_keys: list[str] = field(default_factory=list)


class AggregatorMetrics:
    """The aggregator's metrics in one registry, and the loop's heartbeat for the probes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("minielm_aggregator_events", "Valid events consumed, by type", ["type"], registry=r)
        self.dead_letters = Counter(
            "minielm_aggregator_dead_letters", "Events sent to the dead-letter topic, by kind", ["kind"], registry=r
        )
        self.windows = Counter("minielm_aggregator_windows_written", "Reward windows written to S3", registry=r)
        self.s3_retries = Counter(
            "minielm_aggregator_s3_retries", "S3 writes or commits that failed and will be retried", registry=r
        )
        self.s3_failures = Counter(
            "minielm_aggregator_s3_failures",
            "S3 errors that stopped the aggregator (permission, missing bucket, corrupt object)",
            ["reason"],
            registry=r,
        )
        self.lag = Gauge(
            "minielm_aggregator_consumer_lag",
            "Records not yet consumed (high watermark - position), by topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.last_commit = Gauge(
            "minielm_aggregator_last_commit_timestamp_seconds", "When offsets were last committed", registry=r
        )
        self.last_loop = Gauge(
            "minielm_aggregator_last_loop_timestamp_seconds", "When the consumer loop last turned", registry=r
        )
        self.partitions = Gauge("minielm_aggregator_partitions", "Partitions this member owns", registry=r)
        self._heartbeat = 0.0

    def events_counted(self, counts: Mapping[str, int]) -> None:
        """A batch's valid events by type (one metric update per type, not per event)."""
        for event_type, count in counts.items():
            self.events.labels(event_type).inc(count)

    def dead_letter(self, kind: str) -> None:
        self.dead_letters.labels(kind).inc()

    def window_written(self) -> None:
        self.windows.inc()

    def s3_retry(self) -> None:
        self.s3_retries.inc()

    def s3_failure(self, reason: str) -> None:
        self.s3_failures.labels(reason).inc()

    def committed(self) -> None:
        self.last_commit.set(time.time())

    def consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(max(lag, 0))

    def report_lag(self, consumer, topics: tuple[str, ...], partition: int) -> None:
        """Each topic's lag on ``partition``: the broker's high-water mark minus the consumer's position
        (``consumer``: :class:`~minielm.feedback.consumer_group.GroupConsumer`)."""
        for topic in topics:
            highwater, position = consumer.highwater(topic, partition), consumer.position(topic, partition)
            if highwater is not None and position is not None:
                self.consumer_lag(topic, partition, highwater - position)

    def loop_turned(self, partitions: int) -> None:
        self._heartbeat = time.monotonic()
        self.last_loop.set(time.time())
        self.partitions.set(partitions)

    def stalled_for(self) -> float | None:
        """Seconds since the loop last turned; None before it started."""
        return time.monotonic() - self._heartbeat if self._heartbeat else None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread."""

    def __init__(self, metrics: AggregatorMetrics, host: str, port: int, stall_after_s: float) -> None:
        outer = self
        self.metrics = metrics
        self.stall_after_s = stall_after_s

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                status, body, content_type = outer.answer(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="aggregator-health", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/metrics":
            return 200, self.metrics.exposition(), CONTENT_TYPE_LATEST
        stalled = self.metrics.stalled_for()
        if path == "/healthz":
            if stalled is not None and stalled > self.stall_after_s:
                return 503, f"consumer loop stalled for {stalled:.0f} s\n".encode(), "text/plain"
            return 200, b"ok\n", "text/plain"
        if path == "/readyz":
            if stalled is None or stalled > self.stall_after_s:
                return 503, b"consumer loop not running\n", "text/plain"
            return 200, b"ready\n", "text/plain"
        return 404, b"not found\n", "text/plain"

    def start(self) -> HealthServer:
        self.thread.start()
        log.info("aggregator metrics and probes listening", port=self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
