"""Which feedback windows on S3 are the reference and which are the current window.

A pinned reference (a pointer object listing window keys, written when a model is validated or by
``minielm drift pin-reference``) wins. Without one, the oldest ``drift.reference_windows`` objects of
each partition are the reference. The current window is the newest ``drift.current_windows`` objects
of each partition that are not part of the reference.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from minielm.config import Settings
from minielm.storage import ObjectStore


@dataclass
class WindowSelection:
    reference_keys: list[str]
    current_keys: list[str]
    reference_origin: str  # "pinned <pointer key>", "oldest windows", "given"
    problem: str | None = None  # why the reference could not be found


def _parse(key: str):
    from minielm.feedback.windows import parse_key

    return parse_key(key)


def _by_partition(keys: list[str]) -> dict[tuple[str, int], list[str]]:
    groups: dict[tuple[str, int], list] = defaultdict(list)
    for ref in sorted(_parse(k) for k in keys):
        groups[(ref.topic, ref.partition)].append(ref.key)
    return groups


def oldest_and_newest(keys: list[str], n_oldest: int, n_newest: int) -> tuple[list[str], list[str]]:
    """Per partition: the n oldest objects, and the n newest of those left (by offset)."""
    oldest, newest = [], []
    for group in _by_partition(keys).values():
        head = group[:n_oldest]
        rest = group[n_oldest:]
        oldest += head
        newest += rest[-n_newest:]
    return oldest, newest


def split_halves(keys: list[str]) -> tuple[list[str], list[str]]:
    """Older and newer half of each partition's objects (by offset); by list order when each partition
    holds a single object."""
    older, newer = [], []
    for group in _by_partition(keys).values():
        half = (len(group) + 1) // 2
        older += group[:half]
        newer += group[half:]
    if not newer and len(keys) >= 2:
        half = (len(keys) + 1) // 2
        return list(keys[:half]), list(keys[half:])
    return older, newer


def read_pinned_reference(store: ObjectStore, settings: Settings) -> list[str] | None:
    pointer = store.read_pointer(settings.drift.reference_pointer_key)
    return list(pointer["window_keys"]) if pointer and pointer.get("window_keys") else None


def pin_reference(store: ObjectStore, settings: Settings, window_keys: list[str], reason: str = "") -> dict:
    """Pin these window objects as the reference (one PUT, so readers see the old or the new list)."""
    if not window_keys:
        raise ValueError("window_keys: expected at least one feedback window key to pin as reference")
    missing = [k for k in window_keys if not store.exists(k)]
    if missing:
        raise ValueError(f"window_keys: these objects do not exist: {missing[:5]}")
    pointer = {"window_keys": list(window_keys), "reason": reason, "pinned_at": time.time()}
    store.write_pointer(settings.drift.reference_pointer_key, pointer)
    return pointer


def select_windows(store: ObjectStore, settings: Settings) -> WindowSelection:
    from minielm.feedback.windows import list_windows

    keys = list_windows(store, prefix=settings.feedback.windows_prefix)
    pinned = read_pinned_reference(store, settings)
    where = f"s3://{store.bucket}/{settings.feedback.windows_prefix}/"
    if pinned is not None:
        pinned_set = set(pinned)
        _, current = oldest_and_newest([k for k in keys if k not in pinned_set], 0, settings.drift.current_windows)
        return WindowSelection(pinned, current, f"pinned at {settings.drift.reference_pointer_key}")
    reference, current = oldest_and_newest(keys, settings.drift.reference_windows, settings.drift.current_windows)
    problem = None
    if not reference:
        problem = (
            f"reference: no feedback windows under {where} and no pinned reference at "
            f"s3://{store.bucket}/{settings.drift.reference_pointer_key}"
        )
    return WindowSelection(reference, current, "oldest windows", problem)


def read_keys(store: ObjectStore, keys: list[str]) -> pd.DataFrame | None:
    """The rows of these window objects (None when there are no keys)."""
    from minielm.feedback.windows import read_windows

    return read_windows(store, keys) if keys else None
