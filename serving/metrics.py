"""Prometheus metrics of the model servers (exposed by KServe's ``/metrics`` on the same port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from minielm.features.online import FEAST_FALLBACK
from minielm.models.loading import GENERATION_FALLBACK

REQUESTS = Counter(
    "minielm_requests",
    "Inference requests by model, endpoint (v1, v2) and HTTP status code",
    ["model", "endpoint", "code"],
)
LATENCY = Histogram(
    "minielm_request_latency_seconds",
    "Inference request latency, from first byte in to response",
    ["model", "endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter("minielm_errors", "Failed requests and background failures by type", ["type"])
GENERATION_BATCH_QUERIES = Histogram(
    "minielm_generation_batch_queries",
    "Queries per rewriter generation batch (concurrent requests joined within serving.batch_window_ms)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
KAFKA_DROPPED = Counter("minielm_kafka_dropped", "Rewrite-log events dropped (buffer full or broker unreachable)")
SERVED_VERSION = Info("minielm_served_model", "Registry version and stage each endpoint serves now", ["model"])
MODEL_SWITCHES = Counter(
    "minielm_model_switches",
    "Registry follow outcomes: switched, failed (new version did not load), pointer_unreadable",
    ["model", "outcome"],
)
MODEL_SWITCH_SECONDS = Gauge(
    "minielm_model_switch_seconds",
    "Seconds the last registry switch took: pointer read, then download, load and warm-up (none for the standby)",
    ["model"],
)

__all__ = [
    "REQUESTS",
    "LATENCY",
    "ERRORS",
    "KAFKA_DROPPED",
    "FEAST_FALLBACK",
    "SERVED_VERSION",
    "MODEL_SWITCHES",
    "MODEL_SWITCH_SECONDS",
    "GENERATION_FALLBACK",
    "GENERATION_BATCH_QUERIES",
]


def error_type(status: int) -> str | None:
    """The ``minielm_errors_total{type}`` label for an HTTP status, or None for success."""
    if status < 400:
        return None
    return {400: "invalid_input", 404: "not_found", 503: "not_ready"}.get(
        status, "internal" if status >= 500 else "client"
    )
