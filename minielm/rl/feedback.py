"""Feedback windows for RL: which ones are new since the last run, reading and validating them, and
the observed reward of every served (query, rewrite) pair.

Window keys are fixed by the aggregator contract (``minielm.feedback.windows``):
``<feedback.windows_prefix>/topic=<topic>/partition=<p>/offsets=<first>-<last>.parquet``. The watermark is one
pointer object on S3 holding, per topic and partition, the last offset the RL stage consumed, so a
window replayed by the aggregator (same key, same offsets) is never trained on twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import pandas as pd

from minielm.features.keys import normalize_query, query_key
from minielm.feedback import windows
from minielm.logs import get_logger
from minielm.registry import ModelRegistry
from minielm.rl.errors import RLInputError
from minielm.storage import ObjectStore

log = get_logger(__name__)

WINDOW_COLUMNS = tuple(windows.WINDOW_COLUMNS)


def stream_of(ref: windows.ObjectRef) -> str:
    """The watermark's key for a window's topic and partition."""
    return f"{ref.topic}/{ref.partition}"


def parse_window_key(key: str) -> windows.ObjectRef:
    try:
        ref = windows.parse_key(key)
    except ValueError as error:
        raise RLInputError(f"feedback window key does not follow the aggregator's layout: {error}") from None
    if ref.first_offset > ref.last_offset:
        raise RLInputError(
            f"feedback window {key!r}: first offset {ref.first_offset} is after last offset {ref.last_offset}"
        )
    return ref


def read_watermark(store: ObjectStore, key: str) -> dict[str, int]:
    """The last consumed offset per ``topic/partition`` (empty before the first run)."""
    pointer = store.read_pointer(key)
    return {str(k): int(v) for k, v in (pointer or {}).get("offsets", {}).items()}


def new_windows(store: ObjectStore, watermark: dict[str, int], prefix: str) -> list[windows.ObjectRef]:
    """Windows under ``prefix`` whose offsets lie beyond the watermark, oldest first per partition."""
    refs = [parse_window_key(k) for k in windows.list_windows(store, prefix=prefix)]
    return sorted(r for r in refs if r.last_offset > watermark.get(stream_of(r), -1))


def advance_watermark(store: ObjectStore, key: str, consumed: Iterable[windows.ObjectRef], run_id: str = "") -> dict:
    """Move the watermark past the consumed windows (one PUT; never moves an offset backwards)."""
    offsets = read_watermark(store, key)
    for ref in consumed:
        offsets[stream_of(ref)] = max(offsets.get(stream_of(ref), -1), ref.last_offset)
    pointer = {"offsets": offsets, "run_id": run_id, "updated_at": time.time()}
    store.write_pointer(key, pointer)
    log.info("rl watermark advanced", key=key, offsets=offsets, run_id=run_id)
    return pointer


def read_feedback(
    store: ObjectStore, refs: list[windows.ObjectRef], registry: ModelRegistry, model_name: str
) -> pd.DataFrame:
    """All rows of the windows, validated: every window non-empty with the contract's columns, and
    every row served by a registered version of ``model_name``."""
    frames = []
    for ref in refs:
        frame = store.get_parquet(ref.key)
        missing = [c for c in WINDOW_COLUMNS if c not in frame.columns]
        if missing:
            raise RLInputError(f"feedback window {ref.key} lacks columns {missing}")
        if frame.empty:
            raise RLInputError(
                f"feedback window {ref.key} is empty: a window must hold at least one "
                "served request (offsets "
                f"{ref.first_offset}-{ref.last_offset})"
            )
        frames.append(frame.assign(window_key=ref.key))
    if not frames:
        return pd.DataFrame(columns=[*WINDOW_COLUMNS, "window_key"])
    feedback = pd.concat(frames, ignore_index=True)
    other_models = sorted(set(feedback["model_name"]) - {model_name})
    if other_models:
        log.info("feedback rows of other models ignored", models=other_models)
    feedback = feedback[feedback["model_name"] == model_name].reset_index(drop=True)
    if feedback.empty:
        raise RLInputError(
            f"no usable feedback: the {len(refs)} new window(s) (e.g. {refs[0].key}) hold no request served by "
            f"{model_name!r} (they hold {other_models}); RL learns only from the rewriter's own served requests"
        )
    no_reward = feedback["reward"].isna()
    if no_reward.all():
        raise RLInputError(
            f"no usable feedback: none of the {len(feedback)} requests served by {model_name!r} in the new "
            f"window(s) (e.g. {refs[0].key}) has a reward"
        )
    if no_reward.any():
        log.info("feedback rows without a reward ignored", rows=int(no_reward.sum()))
        feedback = feedback[~no_reward].reset_index(drop=True)
    known = set(registry.versions(model_name))
    unknown = feedback.loc[~feedback["model_version"].isin(known)]
    if not unknown.empty:
        examples = unknown.groupby("model_version")["window_key"].first().to_dict()
        raise RLInputError(
            f"feedback rows name model_version(s) {sorted(examples)} that the registry does "
            f"not hold for {model_name!r} (e.g. in {examples}); known versions: {sorted(known)}"
        )
    return feedback


def observed_rewards(feedback: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Mean observed reward per served (query key, normalised rewrite) pair."""
    if feedback.empty:
        return {}
    frame = pd.DataFrame(
        {
            "query_key": feedback["query"].map(query_key),
            "rewrite": feedback["rewrite"].astype(str).map(normalize_query),
            "reward": feedback["reward"].astype(float),
        }
    )
    means = frame.groupby(["query_key", "rewrite"])["reward"].mean()
    return {(q, r): float(v) for (q, r), v in means.items()}
