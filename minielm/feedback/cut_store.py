"""The S3 side of the aggregator's cuts: write a cut's objects and its partition's query totals, read
back what a restart needs, and delete state and totals objects that a later cut superseded. Reads retry
with backoff until S3 answers or the aggregator stops; a failed write raises, so that the caller never
commits it.

Query totals (see :mod:`minielm.feedback.query_stats`) live beside the state objects:
``<state_prefix>/group=<g>/topic=<rewrites topic>/query_totals/partition=<p>/cut=<rewrites>-<feedback>.parquet``,
named by the offsets the cut commits."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pandas as pd

from minielm.config import FeedbackConfig
from minielm.feedback.events import FeedbackEvent
from minielm.feedback.join import AggregatorError, Cut, spilled_events
from minielm.feedback.windows import ObjectRef, parse_key, partition_prefix
from minielm.logs import get_logger
from minielm.storage import ObjectNotFound, ObjectStore, permanent_s3_error

log = get_logger(__name__)

_TOTALS_KEY = re.compile(r"/partition=(?P<partition>\d+)/cut=(?P<rewrites>\d+)-(?P<feedback>\d+)\.parquet$")


class CutStore:
    def __init__(
        self,
        store: ObjectStore,
        config: FeedbackConfig,
        stop_event: threading.Event,
        group_id: str = "",
        rewrites_topic: str = "",
    ) -> None:
        self.store = store
        self.config = config
        self.stop_event = stop_event
        self.totals_prefix = f"{config.state_prefix}/group={group_id}/topic={rewrites_topic}/query_totals/"

    def write(self, cut: Cut, totals: pd.DataFrame) -> None:
        """The cut's objects and the partition's query totals as of this cut."""
        for key, data in cut.objects:
            self.store.put_bytes(key, data, "application/vnd.apache.parquet")
        self.store.put_parquet(self.totals_key(cut.partition, cut.rewrites_next, cut.feedback_next), totals)

    def totals_key(self, partition: int, rewrites_next: int, feedback_next: int) -> str:
        return f"{self.totals_prefix}partition={partition}/cut={rewrites_next}-{feedback_next}.parquet"

    def latest_totals_keys(self) -> dict[int, str]:
        """The newest query totals object of each partition (a written but uncommitted cut's totals are
        the ones its replay commits, so the newest is right even then)."""
        newest: dict[int, tuple[int, int, str]] = {}
        for key in self.store.list_keys(self.totals_prefix):
            match = _TOTALS_KEY.search(key)
            if match:
                partition, offsets = int(match["partition"]), (int(match["rewrites"]), int(match["feedback"]))
                if partition not in newest or offsets > newest[partition][:2]:
                    newest[partition] = (*offsets, key)
        return {partition: key for partition, (_, _, key) in newest.items()}

    def read_totals(self, key: str) -> pd.DataFrame | None:
        """A totals object read once (a poll); None if a later cut deleted it meanwhile."""
        try:
            return self.store.get_parquet(key)
        except ObjectNotFound:
            return None

    def committed_totals(self, partition: int, rewrites_next: int, feedback_next: int) -> pd.DataFrame | None:
        """The query totals of the committed offsets (None if there is no such object), retried like state."""
        key = self.totals_key(partition, rewrites_next, feedback_next)
        try:
            return self._retry(lambda: self.store.get_parquet(key), "read query totals", corrupt_is_fatal=key)
        except ObjectNotFound:
            log.warning("no query totals for the committed offsets; this partition's statistics start at 0", key=key)
            return None

    def window_refs(self, topic: str, partition: int) -> list[ObjectRef]:
        prefix = partition_prefix(self.config.windows_prefix, topic, partition)
        keys = self._retry(lambda: list(self.store.list_keys(prefix)), "list windows")
        return sorted(parse_key(key) for key in keys if key.endswith(".parquet"))

    def read_object(self, key: str) -> bytes:
        return self._retry(lambda: self.store.get_bytes(key), "read window")

    def read_state(self, key: str) -> list[tuple[int, FeedbackEvent]]:
        """The feedback events held in the state object ``key``; none if there is no such object."""
        try:
            frame = self._retry(lambda: self.store.get_parquet(key), "read state", corrupt_is_fatal=key)
        except ObjectNotFound:
            log.warning("no aggregator state object for the committed offsets; starting empty", key=key)
            return []
        return spilled_events(frame)

    def delete_old_state(self, cut: Cut) -> None:
        """State and totals objects of earlier cuts are no longer needed once a later cut is committed."""
        for current in (cut.objects[-1][0], self.totals_key(cut.partition, cut.rewrites_next, cut.feedback_next)):
            prefix = current.rsplit("/", 1)[0] + "/"
            try:
                for key in self.store.list_keys(prefix):
                    if key != current:
                        self.store.delete(key)
            except Exception as error:  # cleanup only; the next cut tries again
                log.warning("could not delete old aggregator state", error=str(error)[:200])

    def _retry(self, action: Callable, what: str, corrupt_is_fatal: str | None = None):
        """Retry transient S3 errors with backoff; stop at once on what waiting cannot fix."""
        delay = self.config.s3_retry_initial_s
        while True:
            try:
                return action()
            except ObjectNotFound:
                raise
            except Exception as error:
                if self.stop_event.is_set():
                    raise
                permanent = permanent_s3_error(error)
                if permanent is not None:
                    raise AggregatorError(
                        f"S3 refused to {what} ({permanent}); retrying cannot fix this: check the s3.* settings, "
                        "the credentials and the bucket policy"
                    ) from error
                if corrupt_is_fatal and _is_corrupt_parquet(error):
                    raise AggregatorError(
                        f"s3://{self.store.bucket}/{corrupt_is_fatal} is not a readable parquet state object "
                        f"({type(error).__name__}: {str(error)[:200]}); move it aside to start that partition "
                        "from its committed offsets without the carried-over feedback"
                    ) from error
                log.warning("s3 unavailable; retrying", action=what, retry_in_s=delay, error=str(error)[:200])
                time.sleep(delay)
                delay = min(delay * 2, self.config.s3_retry_max_s)


def _is_corrupt_parquet(error: Exception) -> bool:
    """pyarrow could not parse the bytes S3 returned (a network error is a botocore error instead)."""
    import pyarrow

    return isinstance(error, pyarrow.ArrowException)
