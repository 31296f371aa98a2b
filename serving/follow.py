"""Serving follows the registry: a promotion or a rollback reaches the served responses by itself.

A background thread reads the stage pointer of every model loaded from the registry on a fixed
schedule, one read each ``serving.registry_poll_s`` seconds (one small GET per model); a poll that
overruns the interval, because it loaded a version, is followed by the next one at once. When the
pointer names another version, that version is downloaded and loaded beside the serving one, warmed
up, and switched in with one assignment (:meth:`serving.models.ServedModel.switch_to`): requests in
flight finish on the old version, no request fails, and every response names the version that
produced it.

The version switched away from stays in memory as the standby, so a rollback to it needs no download,
no load and no warm-up (it served before). At most two versions are held: the standby is released
before any other version is loaded. The guarantee: once a pointer write has completed, every request
that starts more than ``registry_poll_s`` + the switch time later is served by the new version, where
the switch time is the pointer read plus the download, load and warm-up of the new version (the
pointer read alone for the standby); it is logged with each switch and exported as
``minielm_model_switch_seconds``. Polls run in this
process's thread, so a CPU starved by other work delays them further.

A version that fails to load is logged and counted, the old one keeps serving, and it is not retried
until the pointer moves again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from minielm.logs import get_logger
from minielm.registry import ModelRegistry
from serving.loading import LoadedModel
from serving.metrics import MODEL_SWITCH_SECONDS, MODEL_SWITCHES, SERVED_VERSION
from serving.models import ServedModel

log = get_logger(__name__)


@dataclass
class FollowedModel:
    """One served model, the registry name and stage it follows, and how to load a version of it."""

    served: ServedModel
    name: str
    stage: str
    load_version: Callable[[str], LoadedModel]
    failed_versions: set[str] = field(default_factory=set)
    # The version served before the last switch, kept loaded so that a rollback to it is immediate.
    standby: LoadedModel | None = None


def next_poll_at(scheduled: float, finished: float, poll_s: float) -> float:
    """When the poll after one scheduled at ``scheduled`` (and finished at ``finished``) starts.

    One interval after the scheduled start, so the time a poll takes does not stretch the interval;
    at once when the poll overran the interval (it loaded a version), as the pointer may have moved again.
    """
    return max(scheduled + poll_s, finished)


class RegistryFollower:
    """Polls the stage pointers of the followed models and switches each to the version its stage names."""

    def __init__(self, registry: ModelRegistry, followed: list[FollowedModel], poll_s: float) -> None:
        self.registry = registry
        self.followed = followed
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one poll at a time (the thread, or a caller of poll_once)
        for entry in followed:
            SERVED_VERSION.labels(entry.served.name).info({"version": entry.served.version, "stage": entry.stage})

    def poll_once(self) -> list[str]:
        """Check every followed stage once; returns the names of the models switched."""
        with self._lock:
            return [entry.served.name for entry in self.followed if self._follow(entry)]

    def _follow(self, entry: FollowedModel) -> bool:
        """Switch one model to the version its stage names; True when it switched."""
        started = time.monotonic()
        try:
            version = self.registry.stage_version(entry.name, entry.stage)
        except Exception as error:  # S3 unreachable: keep serving, try again next poll
            MODEL_SWITCHES.labels(entry.served.name, "pointer_unreadable").inc()
            log.warning("stage pointer unreadable", model=entry.name, stage=entry.stage, error=repr(error))
            return False
        if version is None or version == entry.served.version or version in entry.failed_versions:
            return False
        from_standby = entry.standby is not None and entry.standby.version == version
        try:
            if from_standby:
                loaded = entry.standby
            else:
                entry.standby = None  # released before the load: never more than two versions in memory
                loaded = entry.load_version(version)
            previous = entry.served.loaded
            entry.served.switch_to(loaded, warm=not from_standby)  # the standby served before: still warm
        except Exception as error:  # a broken version never replaces a working one
            entry.failed_versions.add(version)
            MODEL_SWITCHES.labels(entry.served.name, "failed").inc()
            log.error(
                "new version failed to load; the previous one keeps serving",
                model=entry.name,
                stage=entry.stage,
                version=version,
                serving=entry.served.version,
                error=f"{type(error).__name__}: {error}",
            )
            return False
        entry.standby = previous
        switch_s = time.monotonic() - started
        MODEL_SWITCHES.labels(entry.served.name, "switched").inc()
        MODEL_SWITCH_SECONDS.labels(entry.served.name).set(switch_s)
        SERVED_VERSION.labels(entry.served.name).info({"version": version, "stage": entry.stage})
        log.info(
            "following the registry: switched",
            model=entry.name,
            stage=entry.stage,
            version=version,
            standby=previous and previous.version,
            from_standby=from_standby,
            switch_s=round(switch_s, 3),
        )
        return True

    def start(self) -> None:
        if self.poll_s <= 0 or not self.followed or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self._thread.start()
        log.info("following the registry", models=[e.name for e in self.followed], poll_s=self.poll_s)

    def _run(self) -> None:
        scheduled = time.monotonic() + self.poll_s
        while not self._stop.wait(max(0.0, scheduled - time.monotonic())):
            self.poll_once()
            scheduled = next_poll_at(scheduled, time.monotonic(), self.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
