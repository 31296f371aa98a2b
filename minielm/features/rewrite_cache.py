"""The head-query rewrite cache: the served version's rewrites of the most frequent queries, in Feast.

After a promotion, :func:`warm_rewrite_cache` (``minielm features warm-cache``; a KFP component can call it
as is) reads the feedback windows, takes the most frequent queries, rewrites them with the version the
stage names, through the same loader and generation backend as the server, and writes them to the
``rewrite_cache`` feature view keyed by query (``query_key``) and model version. A server answers a
single-rewrite request for a cached query from it (:class:`RewriteCache`) without running the model.

The cache never serves a rewrite from another version than the one a request is served by: the lookup
key holds the request's version, the value records the version that produced it (``produced_by``; an
entry whose record disagrees is ignored and counted as ``stale``), and the in-memory copy of hits is
keyed by version too. An entry holds the query text exactly as it was rewritten (whitespace-cleaned, as
the prompt sees it); another surface form with the same ``query_key`` (other casing) is a miss, because
the model could rewrite it differently.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prometheus_client import Counter
from tqdm import tqdm

from minielm.config import Settings
from minielm.errors import InputError
from minielm.features.keys import query_key
from minielm.features.repo import REWRITE_CACHE_COLUMNS, REWRITE_CACHE_VIEW, feature_store, shared_feature_store
from minielm.logs import get_logger
from minielm.models.interfaces import QueryRewriter, rewrite_with_scores
from minielm.models.prompts import clean_text

log = get_logger(__name__)

CACHE_LOOKUPS = Counter(
    "minielm_rewrite_cache_lookups",
    "Rewrite-cache lookups by endpoint and outcome: hit, miss, stale (an entry recorded for another model "
    "version, ignored), error (Feast failed or exceeded feast.online_timeout_ms; the model answered)",
    ["model", "outcome"],
)
VALUE_FIELDS = ("query", "rewrite", "score", "produced_by")
WARN_EVERY_S = 30.0


class RewriteCacheError(InputError):
    """The warm-up job cannot run with these settings or inputs; the message names which."""


@dataclass(frozen=True)
class CachedRewrite:
    """One cached answer: the rewrite and its score (None when the model gives no sequence scores)."""

    rewrite: str
    score: float | None


def head_queries(windows: pd.DataFrame, top: int, min_requests: int) -> pd.DataFrame:
    """The ``top`` most requested queries with at least ``min_requests`` requests, most requested first.

    One row per ``query_key`` (its most requested surface form): ``query``, ``query_key``, ``requests``.
    """
    if "query" not in windows.columns:
        raise RewriteCacheError("feedback windows: expected a 'query' column (one row per served request)")
    texts = windows["query"].dropna().astype(str).map(clean_text)
    counts = texts[texts != ""].value_counts()
    frame = counts.rename_axis("query").reset_index(name="requests")
    frame["query_key"] = frame["query"].map(query_key)
    frame = frame.sort_values(["requests", "query"], ascending=[False, True], kind="stable")
    frame = frame.drop_duplicates("query_key")
    frame = frame[frame["requests"] >= min_requests].head(top)
    return frame[["query", "query_key", "requests"]].reset_index(drop=True)


def rewrite_head(
    model: QueryRewriter, queries: Sequence[str], batch_size: int, progress: bool = True
) -> list[CachedRewrite]:
    """The single greedy rewrite serving would return for each query, in batches of ``batch_size``."""
    rewrites: list[CachedRewrite] = []
    with tqdm(total=len(queries), desc="rewrite head queries", unit="query", disable=not progress) as bar:
        for start in range(0, len(queries), batch_size):
            chunk = list(queries[start : start + batch_size])
            rewrites.extend(CachedRewrite(*row[0]) for row in rewrite_with_scores(model, chunk, 1))
            bar.update(len(chunk))
    return rewrites


def cache_frame(queries: Sequence[str], rewrites: Sequence[CachedRewrite], version: str, now: float) -> pd.DataFrame:
    """Rows of the ``rewrite_cache`` view: keyed by query key and model version, typed as the view declares."""
    frame = pd.DataFrame(
        {
            "query_key": [query_key(q) for q in queries],
            "model_version": version,
            "query": [clean_text(q) for q in queries],
            "rewrite": [r.rewrite for r in rewrites],
            "score": [math.nan if r.score is None else r.score for r in rewrites],
            "produced_by": version,
            "written_ts": now,
        }
    ).astype(REWRITE_CACHE_COLUMNS)
    frame["event_timestamp"] = pd.Timestamp(now, unit="s", tz="UTC").floor("us")
    return frame


def write_cache(settings: Settings, frame: pd.DataFrame) -> int:
    """Write cache rows to the online store of the applied Feast repo; returns the rows written."""
    if len(frame):
        feature_store(settings).write_to_online_store(REWRITE_CACHE_VIEW, frame)
    return len(frame)


def recent_windows(settings: Settings, now: float) -> tuple[pd.DataFrame, int]:
    """Rows of the feedback windows written within ``rewrite_cache.lookback_days``, and how many objects."""
    from minielm.feedback.windows import list_windows, read_windows
    from minielm.storage import ObjectStore

    store = ObjectStore(settings.s3)
    days = settings.rewrite_cache.lookback_days
    keys = list_windows(store, since=now - days * 86400 if days else None, prefix=settings.feedback.windows_prefix)
    return read_windows(store, keys), len(keys)


def served_version(settings: Settings, stage: str, version: str | None) -> tuple[str, Path]:
    """The version to cache (the stage's unless given) and its local directory, downloaded from the registry."""
    from minielm.registry import ModelRegistry
    from minielm.storage import ObjectStore

    name = settings.models.student_rewriter
    registry = ModelRegistry(ObjectStore(settings.s3))
    if version is None:
        version = registry.stage_version(name, stage)
        if version is None:
            raise RewriteCacheError(f"--stage: model {name!r} has no {stage!r} version in the registry to cache")
    elif version not in registry.versions(name):
        raise RewriteCacheError(f"--version: the registry holds no version {version!r} of {name!r}")
    return version, registry.download(name, version, Path(settings.paths.models_dir) / name / version)


def warm_rewrite_cache(
    settings: Settings,
    stage: str = "production",
    version: str | None = None,
    windows: pd.DataFrame | None = None,
    model: QueryRewriter | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Rewrite the head queries with the served version and write them to the cache; returns a report.

    ``windows`` (rows of served requests) defaults to the feedback windows on S3 within the look-back;
    ``model`` defaults to ``version`` (else the ``stage`` version) loaded from the registry as serving
    loads it. The report's ``head_share_of_requests`` is the share of the windows' requests whose exact
    query the cache now holds: the hit rate to expect if traffic keeps its shape.
    """
    from minielm.models.loading import load_model_dir

    started = time.time()
    config = settings.rewrite_cache
    if model is None:
        version, directory = served_version(settings, stage, version)
        model = load_model_dir(directory, "rewriter", settings.serving)
    elif version is None:
        raise RewriteCacheError("version: a model passed in needs the version it is served as")
    objects = None
    if windows is None:
        windows, objects = recent_windows(settings, started)
    head = head_queries(windows, config.top_queries, config.min_requests)
    queries = head["query"].tolist()
    rewrites = rewrite_head(model, queries, config.batch_size, progress)
    written = write_cache(settings, cache_frame(queries, rewrites, version, time.time()))
    requests = int(len(windows))
    report = {
        "model": settings.models.student_rewriter,
        "version": version,
        "window_objects": objects,
        "requests": requests,
        "distinct_queries": int(windows["query"].dropna().astype(str).map(clean_text).nunique()) if requests else 0,
        "cached_queries": written,
        "changed_by_rewrite": sum(r.rewrite != q for q, r in zip(queries, rewrites)),
        "head_share_of_requests": round(float(head["requests"].sum()) / requests, 4) if requests else 0.0,
        "seconds": round(time.time() - started, 3),
    }
    log.info("rewrite cache warmed", **report)
    return report


def warm_after_promotion(settings: Settings, version: str) -> dict[str, Any]:
    """Warm the cache for a version just promoted; a failure leaves the promotion standing (the server then
    runs the model for every query) and is reported, with the command that warms it by hand."""
    try:
        return warm_rewrite_cache(settings, version=version, progress=False)
    except Exception as error:  # the promotion already happened: report, never undo it
        log.warning("rewrite cache not warmed after promotion", version=version, error=repr(error))
        return {"version": version, "error": repr(error), "retry": f"minielm features warm-cache --version {version}"}


class _Memory:
    """A bounded least-recently-used map of hits, keyed by (query text, model version)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], CachedRewrite] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> CachedRewrite | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: CachedRewrite) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class RewriteCache:
    """Server-side lookups: memory first, then the Feast online store within ``feast.online_timeout_ms``."""

    def __init__(self, settings: Settings, workers: int = 2) -> None:
        self.settings = settings
        self.budget_s = settings.feast.online_timeout_ms / 1000.0
        self.memory = _Memory(settings.rewrite_cache.memory_entries)
        self._store = None
        self._store_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rewrite-cache")
        self._last_warning = -WARN_EVERY_S

    def _read(self, texts: Sequence[str], version: str) -> dict[str, list]:
        with self._store_lock:
            if self._store is None:
                self._store = shared_feature_store(self.settings)
        return self._store.get_online_features(
            features=[f"{REWRITE_CACHE_VIEW}:{name}" for name in VALUE_FIELDS],
            entity_rows=[{"query_key": query_key(t), "model_version": version} for t in texts],
        ).to_dict()

    def warm_up(self) -> None:
        """Open the store and read once outside the budget, so no request pays for it. Raises if unusable."""
        self._read(["warm up"], "warm-up")

    def lookup(self, queries: Sequence[str], version: str, model: str) -> list[CachedRewrite | None]:
        """The cached answer of ``version`` for each query, or None (then the model must answer)."""
        texts = [clean_text(q) for q in queries]
        found: list[CachedRewrite | None] = [self.memory.get((t, version)) for t in texts]
        missing = [i for i, entry in enumerate(found) if entry is None]
        outcomes = {"hit": len(texts) - len(missing)}
        if missing:
            values = self._read_within_budget([texts[i] for i in missing], version)
            if values is None:
                outcomes["error"] = len(missing)
            else:
                for row, i in enumerate(missing):
                    found[i], outcome = self._entry(values, row, texts[i], version)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                    if found[i] is not None:
                        self.memory.put((texts[i], version), found[i])
        for outcome, n in outcomes.items():
            if n:
                CACHE_LOOKUPS.labels(model, outcome).inc(n)
        return found

    def memory_hits(self, queries: Sequence[str], version: str, model: str) -> list[CachedRewrite] | None:
        """Every query's entry of ``version`` when all are in memory (counted as hits), else None (uncounted:
        the caller then does a full :meth:`lookup`). Never blocks on the store."""
        entries = [self.memory.get((clean_text(q), version)) for q in queries]
        if any(entry is None for entry in entries):
            return None
        CACHE_LOOKUPS.labels(model, "hit").inc(len(entries))
        return entries

    def _read_within_budget(self, texts: list[str], version: str) -> dict[str, list] | None:
        future = self._pool.submit(self._read, texts, version)
        try:
            return future.result(timeout=self.budget_s)
        except FutureTimeout:
            if not future.cancel():  # the read is running: keep its hits in memory for the next requests
                future.add_done_callback(lambda done: self._remember(done, texts, version))
            self._warn("timeout", budget_ms=self.settings.feast.online_timeout_ms)
        except Exception as error:  # Feast down or not applied: the model answers; counted and logged
            self._warn("error", error=f"{type(error).__name__}: {error}")
        return None

    def _remember(self, done, texts: list[str], version: str) -> None:
        """Hits of a read that finished past the budget go to memory (uncounted: the request already missed)."""
        if done.cancelled() or done.exception() is not None:
            return
        values = done.result()
        for row, text in enumerate(texts):
            entry, _ = self._entry(values, row, text, version)
            if entry is not None:
                self.memory.put((text, version), entry)

    @staticmethod
    def _entry(values: dict[str, list], row: int, text: str, version: str) -> tuple[CachedRewrite | None, str]:
        produced_by = values["produced_by"][row]
        if produced_by is None:
            return None, "miss"
        if produced_by != version:
            return None, "stale"
        if values["query"][row] != text or values["rewrite"][row] is None:
            return None, "miss"  # another surface form of the same key, or a partial row
        score = values["score"][row]
        return CachedRewrite(
            values["rewrite"][row], None if score is None or math.isnan(score) else float(score)
        ), "hit"

    def _warn(self, reason: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning("rewrite cache lookup failed; the model answers", reason=reason, **fields)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
