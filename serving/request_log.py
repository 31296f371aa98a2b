"""The served-rewrite log: every answered rewrite goes to Kafka without slowing the response.

``submit`` hands the event to librdkafka's bounded in-memory queue (``serving.kafka_buffer_size`` events)
and never blocks; librdkafka batches, sends and retries in its own threads, and one background thread here
serves the delivery reports. While the broker is unreachable the queue keeps what it holds and librdkafka
reconnects with a back-off, so a short outage loses nothing. An event the full queue cannot take, that the
broker rejects, or that is still queued at shutdown is dropped and counted in ``minielm_kafka_dropped_total``.
"""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException

from minielm.config import Settings
from minielm.feedback.events import ServedRewrite
from minielm.kafka_io import make_rdkafka_producer
from minielm.logs import get_logger
from serving.metrics import ERRORS, KAFKA_DROPPED

log = get_logger(__name__)


class RewriteLog:
    """Bounded, non-blocking Kafka producer of :class:`ServedRewrite` events."""

    def __init__(self, settings: Settings, reconnect_backoff_s: float = 2.0) -> None:
        self.topic = settings.kafka.topics.rewrites
        backoff_ms = int(reconnect_backoff_s * 1000)
        self._producer = make_rdkafka_producer(
            settings.kafka,
            {
                "queue.buffering.max.messages": settings.serving.kafka_buffer_size,
                "reconnect.backoff.ms": min(100, backoff_ms),
                "reconnect.backoff.max.ms": backoff_ms,
            },
        )
        self.sent = 0
        self.dropped = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve_delivery_reports, name="rewrite-log", daemon=True)
        self._thread.start()

    def submit(self, event: ServedRewrite) -> bool:
        """Queue one event; False (and counted) when the buffer is full."""
        try:
            self._producer.produce(
                self.topic, key=event.request_id.encode(), value=event.to_bytes(), on_delivery=self._delivered
            )
            return True
        except BufferError:
            self._drop(1, "buffer_full")
        except KafkaException as error:  # e.g. a message the client refuses: the event is lost, say so
            self._drop(1, "send_failed")
            log.warning("rewrite log event refused", error=str(error))
        return False

    def _drop(self, n: int, reason: str) -> None:
        self.dropped += n
        KAFKA_DROPPED.inc(n)
        ERRORS.labels(f"kafka_{reason}").inc(n)

    def _delivered(self, error: KafkaError | None, _message) -> None:
        if error is None:
            self.sent += 1
        elif error.code() == KafkaError._PURGE_QUEUE:
            self._drop(1, "shutdown")
        else:
            self._drop(1, "send_failed")
            log.warning("rewrite log event not delivered", error=str(error))

    def _serve_delivery_reports(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (as far as the broker allows within the timeout), drop the rest, stop."""
        self._producer.flush(timeout_s)
        self._stopping.set()
        self._thread.join(timeout=1.0)
        self._producer.purge()
        self._producer.flush(1.0)  # reports the purged events, each counted as dropped
