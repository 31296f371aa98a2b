"""The aggregator's output on S3: window objects (one row per served request) and late-event objects.

Keys carry the source topic, partition and offset range, so a replay after a crash rewrites the very
same object instead of adding a second copy:

- ``<windows_prefix>/topic=<rewrites topic>/partition=<p>/offsets=<first>-<last>.parquet``
- ``<late_prefix>/topic=<feedback topic>/partition=<p>/offsets=<first>-<last>.parquet``

Each window object also records, in its parquet metadata, the feedback offset up to which its rows were
joined (``feedback_next``): a restarted aggregator reproduces that exact cut.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from minielm.config import FeedbackConfig
from minielm.storage import ObjectStore

WINDOW_COLUMNS = {
    "request_id": "string",
    "query": "string",
    "query_key": "string",
    "rewrite": "string",
    "model_name": "string",
    "model_version": "string",
    "ts": "float64",
    "n_results": "int64",
    "impressions": "int64",
    "clicks": "int64",
    "add_to_carts": "int64",
    "purchases": "int64",
    "reformulated": "bool",
    "reward": "float64",
    # Beyond the contract: how many feedback events were joined into the row (for exact audits).
    "feedback_events": "int64",
}
LATE_COLUMNS = {
    "offset": "int64",
    "event_type": "string",
    "request_id": "string",
    "query": "string",
    "product_id": "string",
    "position": "Int64",
    "ts": "float64",
    "reason": "string",
    "event_json": "string",
}
METADATA_KEY = b"minielm.feedback.cut"
_KEY = re.compile(
    r"^(?P<prefix>.+)/topic=(?P<topic>[^/]+)/partition=(?P<partition>\d+)/"
    r"offsets=(?P<first>\d+)-(?P<last>\d+)\.parquet$"
)


def reward(clicks, add_to_carts, purchases, reformulated, config: FeedbackConfig):
    """The reward of a served request (the window rows' ``reward``): weighted engagement minus the
    reformulation penalty, weights from the feedback config. Scalars or numpy arrays alike."""
    return (
        config.click_weight * clicks
        + config.add_to_cart_weight * add_to_carts
        + config.purchase_weight * purchases
        - config.reformulation_penalty * reformulated
    )


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A window or late-events object, ordered by topic, partition and offsets."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    key: str


def object_key(prefix: str, topic: str, partition: int, first: int, last: int) -> str:
    if first > last:
        raise ValueError(f"offset range {first}-{last} is empty")
    return f"{prefix}/topic={topic}/partition={partition}/offsets={first}-{last}.parquet"


def partition_prefix(prefix: str, topic: str, partition: int) -> str:
    return f"{prefix}/topic={topic}/partition={partition}/"


def parse_key(key: str) -> ObjectRef:
    match = _KEY.match(key)
    if not match:
        raise ValueError(f"{key!r} is not a <prefix>/topic=<t>/partition=<p>/offsets=<first>-<last>.parquet key")
    return ObjectRef(match["topic"], int(match["partition"]), int(match["first"]), int(match["last"]), key)


def encode_frame(frame: pd.DataFrame, columns: dict[str, str], metadata: dict | None = None) -> bytes:
    """Parquet bytes with the typed column layout and optional JSON metadata."""
    typed = frame.reindex(columns=list(columns)).astype(columns)
    return _parquet_bytes(pa.Table.from_pandas(typed, preserve_index=False), metadata)


def encode_columns(values: Mapping[str, Sequence], columns: dict[str, str], metadata: dict | None = None) -> bytes:
    """The bytes :func:`encode_frame` writes for the same values (schema and pandas metadata included), built
    from lists or arrays straight into Arrow: the aggregator's hot path skips the DataFrame."""
    schema = _arrow_schema(tuple(columns.items()))
    arrays = [pa.array(values[f.name], type=f.type, from_pandas=True) for f in schema]
    return _parquet_bytes(pa.Table.from_arrays(arrays, schema=schema), metadata)


@cache
def _arrow_schema(layout: tuple[tuple[str, str], ...]) -> pa.Schema:
    """The Arrow schema, with pandas metadata, that ``pa.Table.from_pandas`` gives a frame of this layout."""
    empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in layout})
    return pa.Schema.from_pandas(empty, preserve_index=False)


def _parquet_bytes(table: pa.Table, metadata: dict | None) -> bytes:
    if metadata is not None:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()}
        )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def read_metadata(data: bytes) -> dict:
    """The cut metadata the aggregator stored in a window object ({} if none)."""
    schema = pq.read_schema(io.BytesIO(data))
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def list_windows(
    store: ObjectStore, since: int | float | None = None, prefix: str = FeedbackConfig().windows_prefix
) -> list[str]:
    """Keys of the window objects, ordered by topic, partition and offset.

    ``since``: only objects written at or after this time (epoch seconds, from the S3 LastModified).
    """
    refs = []
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".parquet"):
                continue
            if since is not None and item["LastModified"].timestamp() < since:
                continue
            refs.append(parse_key(item["Key"]))
    return [ref.key for ref in sorted(refs)]


def read_windows(store: ObjectStore, keys: Iterable[str]) -> pd.DataFrame:
    """All rows of the given window objects, with a ``window_key`` column naming the object."""
    frames = [store.get_parquet(key).assign(window_key=key) for key in keys]
    if not frames:
        return pd.DataFrame(
            {**{c: pd.Series(dtype=t) for c, t in WINDOW_COLUMNS.items()}, "window_key": pd.Series(dtype="string")}
        )
    return pd.concat(frames, ignore_index=True)


def read_late_events(store: ObjectStore, prefix: str = FeedbackConfig().late_prefix) -> pd.DataFrame:
    """Every late or unmatched feedback event the aggregator set aside."""
    keys = sorted(parse_key(k) for k in store.list_keys(prefix.rstrip("/") + "/") if k.endswith(".parquet"))
    frames = [store.get_parquet(ref.key).assign(late_key=ref.key) for ref in keys]
    if not frames:
        return pd.DataFrame(
            {**{c: pd.Series(dtype=t) for c, t in LATE_COLUMNS.items()}, "late_key": pd.Series(dtype="string")}
        )
    return pd.concat(frames, ignore_index=True)


def rewards_by_query(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean reward, request count and engagement per query key."""
    return _rewards(frame, ["query_key"])


def rewards_by_query_rewrite(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean reward and request count per (query key, rewrite): what RL compares rewrites by."""
    return _rewards(frame, ["query_key", "rewrite"])


def _rewards(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    grouped = frame.groupby(list(by), sort=True)
    return grouped.agg(
        requests=("request_id", "count"),
        reward=("reward", "mean"),
        clicks=("clicks", "sum"),
        add_to_carts=("add_to_carts", "sum"),
        purchases=("purchases", "sum"),
        reformulation_rate=("reformulated", "mean"),
    ).reset_index()
