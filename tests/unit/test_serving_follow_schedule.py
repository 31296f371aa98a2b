"""The registry follower without servers: the versions it loads, the standby kept for rollbacks, its schedule."""

from __future__ import annotations

import time

import serving  # noqa: F401  (imports kserve with a clean argv)
from minielm.config import load_settings
from serving.follow import FollowedModel, RegistryFollower, next_poll_at
from serving.loading import LoadedModel
from serving.models import RewriterModel
from tests.serving_standins import SPELLING, SpellingRewriter

NAME = "follow-unit"
TABLES = {"v1": SPELLING, "v2": {**SPELLING, "hedphones": "earphones"}, "v3": {**SPELLING, "hedphones": "buds"}}


class PointerStore:
    """The registry's stage pointer as the follower reads it."""

    def __init__(self, version: str) -> None:
        self.version = version

    def stage_version(self, name: str, stage: str) -> str | None:
        return self.version


class Loader:
    """Loads a version from TABLES and records which versions were loaded (a download and load each)."""

    def __init__(self) -> None:
        self.loads: list[str] = []

    def __call__(self, version: str) -> LoadedModel:
        if version not in TABLES:
            raise FileNotFoundError(f"no files for {version}")
        self.loads.append(version)
        return LoadedModel(NAME, version, "registry:production", SpellingRewriter(TABLES[version], version))


def _followed(loader: Loader) -> FollowedModel:
    served = RewriterModel(NAME, load_settings(environ={}), loader=lambda: loader("v1"))
    served.load()
    return FollowedModel(served, NAME, "production", loader)


def _answer(entry: FollowedModel) -> str:
    return entry.served.current().model.fix("wireles hedphones")


def test_a_rollback_switches_to_the_standby_without_loading_or_warming_it():
    loader = Loader()
    entry = _followed(loader)
    warmed = []
    warm_up = entry.served.warm_up
    entry.served.warm_up = lambda current=None: (warmed.append(current.version), warm_up(current))
    pointer = PointerStore("v1")
    follower = RegistryFollower(pointer, [entry], poll_s=0)
    assert follower.poll_once() == []
    pointer.version = "v2"
    assert follower.poll_once() == [NAME]
    assert (entry.served.version, entry.standby.version, _answer(entry)) == ("v2", "v1", "wireless earphones")
    pointer.version = "v1"  # rollback
    assert follower.poll_once() == [NAME]
    assert (entry.served.version, entry.standby.version, _answer(entry)) == ("v1", "v2", "wireless headphones")
    assert loader.loads == ["v1", "v2"]  # v1 was not loaded again
    assert warmed == ["v2"]  # nor warmed up again: it served before


def test_at_most_two_versions_are_held():
    loader = Loader()
    entry = _followed(loader)
    pointer = PointerStore("v2")
    follower = RegistryFollower(pointer, [entry], poll_s=0)
    follower.poll_once()
    pointer.version = "v3"
    follower.poll_once()
    assert (entry.served.version, entry.standby.version) == ("v3", "v2")  # v1 released
    pointer.version = "v1"
    follower.poll_once()
    assert (entry.served.version, entry.standby.version) == ("v1", "v3")
    assert loader.loads == ["v1", "v2", "v3", "v1"]


def test_a_version_that_fails_to_load_leaves_the_serving_one_and_is_not_retried():
    loader = Loader()
    entry = _followed(loader)
    pointer = PointerStore("v9-broken")
    follower = RegistryFollower(pointer, [entry], poll_s=0)
    assert follower.poll_once() == []
    assert follower.poll_once() == []
    assert entry.served.version == "v1" and entry.failed_versions == {"v9-broken"}
    assert loader.loads == ["v1"]
    pointer.version = "v2"
    assert follower.poll_once() == [NAME]


def test_an_unreadable_pointer_keeps_serving():
    class Unreachable:
        def stage_version(self, name, stage):
            raise ConnectionError("S3 down")

    entry = _followed(Loader())
    assert RegistryFollower(Unreachable(), [entry], poll_s=0).poll_once() == []
    assert entry.served.version == "v1"


def test_polls_keep_a_fixed_schedule():
    assert next_poll_at(scheduled=10.0, finished=10.02, poll_s=0.25) == 10.25  # a poll's own time is not added
    assert next_poll_at(scheduled=10.0, finished=11.5, poll_s=0.25) == 11.5  # overran (a load): next one at once


def test_the_background_thread_follows_the_pointer():
    loader = Loader()
    entry = _followed(loader)
    pointer = PointerStore("v2")
    follower = RegistryFollower(pointer, [entry], poll_s=0.05)
    follower.start()
    try:
        deadline = time.monotonic() + 30
        while entry.served.version != "v2" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        follower.stop()
    assert entry.served.version == "v2" and entry.standby.version == "v1"
    assert follower._thread is None
