"""The aggregator's dead-letter producer: letters are sent as they come and made durable before each commit.

:meth:`DeadLetterProducer.flush` returns only when every letter sent so far is acknowledged by the
broker; letters the broker refused are sent again, and if any is still not delivered it raises, so the
aggregator retries the cut instead of committing the offsets of events whose dead letters are missing.
"""

from __future__ import annotations

import time

from minielm.config import KafkaConfig
from minielm.errors import ServiceError
from minielm.kafka_io import make_rdkafka_producer
from minielm.logs import get_logger

log = get_logger(__name__)


class DeadLetterNotDelivered(ServiceError):
    """Dead letters the broker did not acknowledge within the timeout (the cut is not committed)."""


class DeadLetterProducer:
    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.topic = topic
        self.timeout_s = config.request_timeout_ms / 1000
        self.producer = make_rdkafka_producer(config)
        self.failed: list[tuple[bytes | None, bytes]] = []

    def send(self, key: bytes | None, value: bytes) -> None:
        def delivered(error, _message) -> None:
            if error is not None:
                self.failed.append((key, value))
                log.warning("dead letter not delivered; sent again before the next commit", error=str(error))

        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)

    def flush(self) -> None:
        """Block until every letter is acknowledged; :class:`DeadLetterNotDelivered` if some are not."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            waiting = self.producer.flush(max(deadline - time.monotonic(), 0.0))
            retry, self.failed = self.failed, []
            if not retry and not waiting:
                return
            if time.monotonic() >= deadline:
                self.failed = retry + self.failed
                raise DeadLetterNotDelivered(
                    f"{len(retry) + waiting} dead letters to {self.topic} not acknowledged "
                    f"within {self.timeout_s:.0f} s"
                )
            for key, value in retry:
                self.send(key, value)

    def close(self) -> None:
        self.producer.flush(self.timeout_s)
