"""The parquet objects of one cut, built column by column: the window's rows, the late events, the state spill.

A window's rows are its served requests in order; the feedback joined to them arrives as two aligned
sequences, each event and the row it belongs to, and is counted with one ``bincount`` over (row, feedback
type) pairs. Columns go straight into Arrow (:func:`~minielm.feedback.windows.encode_columns`), with the
schema :func:`~minielm.feedback.windows.encode_frame` gives the same values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minielm.config import FeedbackConfig
from minielm.features.keys import query_key
from minielm.feedback.decoding import event_json
from minielm.feedback.windows import LATE_COLUMNS, WINDOW_COLUMNS, encode_columns, reward

SPILL_COLUMNS = {"offset": "int64", "event_json": "string"}
# Column of each feedback type in the count matrix of a window's rows.
COUNT_COLUMN = {"impression": 0, "click": 1, "add_to_cart": 2, "purchase": 3, "reformulation": 4}


def encode_window(
    served: Sequence, rows: Sequence[int], feedback: Sequence, config: FeedbackConfig, metadata: dict
) -> bytes:
    """One row per served request with its engagement counts and reward; ``rows[i]`` is the 0-based row
    of ``feedback[i]``."""
    kinds = np.asarray([COUNT_COLUMN[event.event_type] for event in feedback], dtype=np.int64)
    pairs = np.asarray(rows, dtype=np.int64) * 5 + kinds
    counts = np.bincount(pairs, minlength=5 * len(served)).reshape(-1, 5)
    reformulated = counts[:, 4] > 0
    queries = [s.query for s in served]
    keys = {query: query_key(query) for query in set(queries)}
    columns = {
        "request_id": [s.request_id for s in served],
        "query": queries,
        "query_key": [keys[query] for query in queries],
        "rewrite": [s.rewrite for s in served],
        "model_name": [s.model_name for s in served],
        "model_version": [s.model_version for s in served],
        "ts": [s.ts for s in served],
        "n_results": [len(s.product_ids) for s in served],
        "impressions": counts[:, 0],
        "clicks": counts[:, 1],
        "add_to_carts": counts[:, 2],
        "purchases": counts[:, 3],
        "reformulated": reformulated,
        "reward": reward(counts[:, 1], counts[:, 2], counts[:, 3], reformulated, config),
        "feedback_events": counts.sum(axis=1),
    }
    return encode_columns(columns, WINDOW_COLUMNS, metadata)


def encode_late(late: Sequence[tuple[int, object, str]]) -> bytes:
    """Late and unmatched feedback events: (offset, event, reason) each, with the event's JSON."""
    events = [event for _, event, _ in late]
    columns = {
        "offset": [offset for offset, _, _ in late],
        "event_type": [e.event_type for e in events],
        "request_id": [e.request_id for e in events],
        "query": [e.query for e in events],
        "product_id": [e.product_id for e in events],
        "position": [e.position for e in events],
        "ts": [e.ts for e in events],
        "reason": [reason for _, _, reason in late],
        "event_json": [event_json(e) for e in events],
    }
    return encode_columns(columns, LATE_COLUMNS)


def encode_spill(offsets: Sequence[int], events: Sequence) -> bytes:
    """The state object: consumed feedback events not yet in any window or late object."""
    return encode_columns({"offset": offsets, "event_json": [event_json(e) for e in events]}, SPILL_COLUMNS)
