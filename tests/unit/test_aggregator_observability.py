"""Aggregator probes and S3 error classes: a stalled loop fails liveness; AccessDenied or a corrupt state
object stops with a clear error instead of being retried forever like an outage."""

from __future__ import annotations

import io
import threading

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from minielm.config import FeedbackConfig
from minielm.feedback.cut_store import CutStore
from minielm.feedback.join import AggregatorError
from minielm.feedback.observability import AggregatorMetrics, HealthServer
from minielm.storage import permanent_s3_error


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} message"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    "error,permanent",
    [
        (_client_error("AccessDenied", 403), "AccessDenied: AccessDenied message"),
        (_client_error("NoSuchBucket", 404), "NoSuchBucket: NoSuchBucket message"),
        (_client_error("InternalError", 500), None),
        (_client_error("SlowDown", 503), None),
        (_client_error("RequestTimeout", 400), None),
        (EndpointConnectionError(endpoint_url="http://s3"), None),
    ],
)
def test_permanent_s3_errors_are_told_from_outages(error, permanent):
    assert permanent_s3_error(error) == permanent


def test_liveness_fails_when_the_loop_stalls(monkeypatch):
    import minielm.feedback.observability as observability

    clock = {"now": 1000.0}
    monkeypatch.setattr(observability.time, "monotonic", lambda: clock["now"])
    metrics = AggregatorMetrics()
    health = HealthServer(metrics, "127.0.0.1", 0, stall_after_s=60).start()
    try:
        url = f"http://127.0.0.1:{health.port}"
        assert httpx.get(f"{url}/healthz").status_code == 200  # starting up: alive, not ready
        assert httpx.get(f"{url}/readyz").status_code == 503
        metrics.loop_turned(partitions=2)
        assert httpx.get(f"{url}/readyz").status_code == 200
        clock["now"] += 61
        stalled = httpx.get(f"{url}/healthz")
        assert stalled.status_code == 503 and "stalled for 61 s" in stalled.text
        assert "minielm_aggregator_partitions 2.0" in httpx.get(f"{url}/metrics").text
    finally:
        health.stop()


class _FailingStore:
    bucket = "minielm"

    def __init__(self, error: Exception | None = None, body: bytes = b"") -> None:
        self.error, self.body, self.calls = error, body, 0

    def list_keys(self, prefix):
        self.calls += 1
        raise self.error

    def get_parquet(self, key):
        import pandas as pd

        self.calls += 1
        return pd.read_parquet(io.BytesIO(self.body))


def test_access_denied_stops_instead_of_retrying_forever():
    store = _FailingStore(_client_error("AccessDenied", 403))
    cuts = CutStore(store, FeedbackConfig(s3_retry_initial_s=0.01), threading.Event())
    with pytest.raises(AggregatorError, match="S3 refused to list windows .AccessDenied"):
        cuts.window_refs("minielm.rewrites", 0)
    assert store.calls == 1


def test_a_corrupt_state_object_is_named():
    cuts = CutStore(_FailingStore(body=b"not parquet"), FeedbackConfig(), threading.Event())
    with pytest.raises(AggregatorError, match="s3://minielm/state/p0.parquet is not a readable parquet state object"):
        cuts.read_state("state/p0.parquet")
