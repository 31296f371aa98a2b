"""The served-rewrite log: every answered rewrite goes to Kafka without slowing the response.

``submit`` only puts the event on a bounded in-memory queue (never blocks); one background thread
sends to ``settings.kafka.topics.rewrites``. When the queue is full, or the broker rejects or cannot
take an event, it is dropped and counted in ``minielm_kafka_dropped_total``. While the broker is
unreachable the thread keeps the queue (up to its bound) and reconnects with a back-off, so a short
outage loses nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from minielm.config import Settings
from minielm.feedback.events import ServedRewrite
from minielm.kafka_io import make_producer
from minielm.logs import get_logger
from serving.metrics import ERRORS, KAFKA_DROPPED

log = get_logger(__name__)

_STOP = object()


class RewriteLog:
    """Bounded, non-blocking Kafka producer of :class:`ServedRewrite` events."""

    def __init__(
        self,
        settings: Settings,
        producer_factory: Callable | None = None,
        reconnect_backoff_s: float = 2.0,
        max_block_ms: int = 1000,
    ) -> None:
        self.topic = settings.kafka.topics.rewrites
        self._settings = settings
        self._factory = producer_factory or (lambda: make_producer(settings.kafka, max_block_ms=max_block_ms))
        self._queue: queue.Queue = queue.Queue(maxsize=settings.serving.kafka_buffer_size)
        self._backoff_s = reconnect_backoff_s
        self._producer = None
        self._stopping = threading.Event()
        self.sent = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="rewrite-log", daemon=True)
        self._thread.start()

    def submit(self, event: ServedRewrite) -> bool:
        """Queue one event; False (and counted) when the buffer is full."""
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self._drop(1, "buffer_full")
            return False

    def _drop(self, n: int, reason: str) -> None:
        self.dropped += n
        KAFKA_DROPPED.inc(n)
        ERRORS.labels(f"kafka_{reason}").inc(n)

    def _connect(self) -> bool:
        try:
            self._producer = self._factory()
            log.info("rewrite log connected", topic=self.topic)
            return True
        except Exception as error:  # broker down: keep the queue, retry after the back-off
            ERRORS.labels("kafka_connect").inc()
            log.warning(
                "rewrite log cannot reach Kafka",
                error=f"{type(error).__name__}: {error}",
                retry_in_s=self._backoff_s,
                queued=self._queue.qsize(),
            )
            return False

    def _on_error(self, error: Exception) -> None:
        self._drop(1, "send_failed")
        log.warning("rewrite log event not delivered", error=f"{type(error).__name__}: {error}")

    def _on_sent(self, _metadata) -> None:
        self.sent += 1

    def _send(self, event: ServedRewrite) -> None:
        try:
            future = self._producer.send(self.topic, key=event.request_id.encode(), value=event.to_bytes())
        except Exception as error:  # metadata timeout or closed producer: the event is lost, say so
            self._on_error(error)
            return
        future.add_callback(self._on_sent)
        future.add_errback(self._on_error)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                break
            while self._producer is None and not self._stopping.is_set():
                if not self._connect():
                    self._stopping.wait(self._backoff_s)
            if self._producer is None:
                self._drop(1, "shutdown")
                continue
            self._send(event)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (as far as the broker allows within the timeout), then stop."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and self._producer is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        try:
            self._queue.put(_STOP, timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Full:
            pass
        self._thread.join(timeout=max(deadline - time.monotonic(), 0.5))
        leftover = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            leftover += item is not _STOP
        if leftover:
            self._drop(leftover, "shutdown")
        if self._producer is not None:
            self._producer.flush(timeout=max(deadline - time.monotonic(), 0.5))
            self._producer.close(timeout=1)
