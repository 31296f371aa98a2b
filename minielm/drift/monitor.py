"""Compare a reference window of served requests with a current one and decide, check by check.

Input frames have the feedback-window columns (query, rewrite, clicks, reformulated, n_results,
reward, ...). A check whose columns are missing, or a window that is absent, empty or too small,
gives the status ``no_data`` naming what is missing: it never passes silently.

Overall status: ``drift`` when any check's Evidently test failed; otherwise ``no_data`` when any
enabled check could not run; otherwise ``ok``. A failed check listed in ``drift.silenced_checks``
(a known false alarm) is reported as ``silenced`` and counts for neither.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd

from minielm.config import DriftConfig
from minielm.drift import checks as drift_checks
from minielm.drift.checks import CheckSpec
from minielm.drift.descriptors import (
    build_vocabulary,
    map_distinct,
    outcome_columns,
    rewrite_behaviour,
    text_descriptors,
)
from minielm.drift.embeddings import QueryEncoder, embedding_column, shared_encoder
from minielm.logs import get_logger

log = get_logger(__name__)

Status = Literal["ok", "drift", "no_data", "silenced"]


@dataclass
class CheckResult:
    name: str
    family: str
    status: Status
    score: float | None
    threshold: float
    what: str
    runbook_section: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftResult:
    run_id: str
    status: Status
    checks: list[CheckResult]
    missing: list[str]
    reference_rows: int
    current_rows: int
    reference_label: str = ""
    current_label: str = ""
    vocabulary_source: str = ""
    started_at: float = 0.0
    duration_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    retraining: dict[str, Any] | None = None

    @property
    def drifted(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "drift"]

    @property
    def no_data(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "no_data"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted_checks"] = [c.name for c in self.drifted]
        return data

    def summary_lines(self) -> list[str]:
        """What on-call reads first: the verdict, then each check's score against its threshold."""
        lines = [
            f"drift status: {self.status.upper()}  (run {self.run_id}; reference {self.reference_rows} "
            f"requests, current {self.current_rows} requests)"
        ]
        lines += [f"  missing: {item}" for item in self.missing]
        for check in self.checks:
            score = "-" if check.score is None else f"{check.score:.3f}"
            lines.append(
                f"  {check.status:<7} {check.name:<26} score {score:>7}  threshold {check.threshold:.3f}"
                + (f"  ({check.detail})" if check.status == "no_data" else "")
            )
        return lines


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _usable(window: pd.DataFrame | None) -> pd.DataFrame | None:
    """Rows with a query (the one column every check needs); None stays None."""
    if window is None:
        return None
    if "query" not in window.columns:
        return window.iloc[0:0]
    kept = window[window["query"].notna() & (window["query"].astype(str).str.strip() != "")]
    return kept.reset_index(drop=True)


def _window_problem(
    name: str, raw: pd.DataFrame | None, usable: pd.DataFrame | None, min_rows: int, label: str
) -> str | None:
    where = f" ({label})" if label else ""
    if raw is None:
        return f"{name} window{where} does not exist"
    if "query" not in raw.columns:
        return f"{name} window{where} has no 'query' column (columns: {sorted(raw.columns)})"
    if usable is None or len(usable) < min_rows:
        n = 0 if usable is None else len(usable)
        return f"{name} window{where} has {n} requests with a query, fewer than drift.min_rows={min_rows}"
    return None


def _check_problem(check: CheckSpec, reference: pd.DataFrame, current: pd.DataFrame) -> str | None:
    for name, window in (("reference", reference), ("current", current)):
        absent = [c for c in check.requires if c not in window.columns]
        if absent:
            return f"{name} window lacks column(s) {absent}"
        empty = [c for c in check.requires if window[c].isna().all()]
        if empty:
            return f"{name} window has only nulls in column(s) {empty}"
    distinct = pd.Series(reference["query"].astype(str).unique()) if check.kind == "embedding" else None
    if distinct is not None and distinct.str.strip().str.casefold().nunique() < 2:
        return "reference window has fewer than 2 distinct queries"
    return None


def _cross_fitted_oov(
    reference: pd.DataFrame, current: pd.DataFrame, prefix: str, seed: int
) -> tuple[pd.Series, pd.Series]:
    """OOV share against the reference's own words without scoring the reference against itself.

    The reference is split in two halves by query (repeats of a query stay together); each half is
    scored against the other half's words and the current window against one half's, so equal
    distributions give equal expected shares.
    """
    from minielm.features.keys import query_key

    parity = map_distinct(reference[prefix], lambda text: (int(query_key(text), 16) + seed) % 2)
    half = (parity == 0).astype(bool)
    words_a = build_vocabulary(reference.loc[half, prefix].dropna().astype(str))
    words_b = build_vocabulary(reference.loc[~half, prefix].dropna().astype(str))
    ref_oov = pd.Series(0.0, index=range(len(reference)))
    ref_oov[half] = text_descriptors(reference.loc[half, prefix], words_b, prefix)[f"{prefix}_oov_share"].to_numpy()
    ref_oov[~half] = text_descriptors(reference.loc[~half, prefix], words_a, prefix)[f"{prefix}_oov_share"].to_numpy()
    cur_oov = text_descriptors(current[prefix], words_a, prefix)[f"{prefix}_oov_share"]
    return ref_oov, cur_oov


def feature_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    specs: list[CheckSpec],
    vocabulary: frozenset[str] | None,
    config: DriftConfig,
    seed: int,
    encoder: QueryEncoder | None,
    show_progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-request columns the enabled checks read, for both windows."""
    columns = {s.column for s in specs}
    frames = []
    for window in (reference, current):
        parts = [outcome_columns(window)]
        if "rewrite" in window.columns and {"rewrite_identical", "rewrite_edit_distance"} & columns:
            parts.append(rewrite_behaviour(window["query"], window["rewrite"]))
        frames.append(parts)
    for prefix in ("query", "rewrite"):
        if not any(s.family == "descriptors" and s.column.startswith(f"{prefix}_") for s in specs):
            continue
        if prefix not in reference.columns or prefix not in current.columns:
            continue
        words = vocabulary if vocabulary is not None else frozenset()
        frames[0].append(text_descriptors(reference[prefix], words, prefix))
        frames[1].append(text_descriptors(current[prefix], words, prefix))
        if vocabulary is None:
            ref_oov, cur_oov = _cross_fitted_oov(reference, current, prefix, seed)
            frames[0][-1][f"{prefix}_oov_share"] = ref_oov.to_numpy()
            frames[1][-1][f"{prefix}_oov_share"] = cur_oov.to_numpy()
    if "query_embedding" in columns:
        encoder = encoder or shared_encoder(
            config.embedding_model_path, config.embedding_batch_size, threads=config.embedding_threads
        )
        for offset, (window, parts) in enumerate(zip((reference, current), frames)):
            parts.append(
                pd.DataFrame(
                    {
                        "query_embedding": embedding_column(
                            window["query"], encoder, config.embedding_sample_size, seed + offset, show_progress
                        )
                    }
                )
            )
    return tuple(pd.concat(parts, axis=1) for parts in frames)  # type: ignore[return-value]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def run_report(reference: pd.DataFrame, current: pd.DataFrame, specs: list[CheckSpec], config: DriftConfig):
    """Run one Evidently report (one metric and one test per check); returns the snapshot and per-check
    (status, score, description) read from the snapshot's test results."""
    from evidently import DataDefinition, Dataset, Report

    metrics = [drift_checks.evidently_metric(spec, config) for spec in specs]
    numeric = [s.column for s in specs if s.kind != "embedding"]
    definition = DataDefinition(numerical_columns=numeric)
    keep = list(dict.fromkeys(s.column for s in specs))
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current[keep], data_definition=definition),
        Dataset.from_pandas(reference[keep], data_definition=definition),
    )
    data = snapshot.dict()
    outcome: dict[str, tuple[str, float | None, str]] = {}
    tests_by_metric = {t["metric_config"]["metric_id"]: t for t in data["tests"]}
    for spec, metric in zip(specs, data["metrics"]):
        test = tests_by_metric.get(metric["id"])
        if test is None:
            outcome[spec.name] = ("no_data", None, "the Evidently report produced no test for this check")
            continue
        status = getattr(test["status"], "value", test["status"])
        verdict = {"SUCCESS": "ok", "FAIL": "drift"}.get(str(status), "no_data")
        outcome[spec.name] = (verdict, _finite(metric["value"]), test.get("description") or "")
    return snapshot, outcome


def run_drift(
    reference: pd.DataFrame | None,
    current: pd.DataFrame | None,
    config: DriftConfig,
    *,
    seed: int = 0,
    vocabulary: frozenset[str] | None = None,
    vocabulary_source: str | None = None,
    encoder: QueryEncoder | None = None,
    reference_label: str = "",
    current_label: str = "",
    missing_reference_reason: str | None = None,
    show_progress: bool = False,
):
    """Decide drift for every enabled check. Returns (DriftResult, Evidently snapshot or None)."""
    started = time.time()
    specs = drift_checks.enabled_checks(config)
    ref, cur = _usable(reference), _usable(current)
    reference_problem = (
        missing_reference_reason
        if reference is None and missing_reference_reason
        else _window_problem("reference", reference, ref, config.min_rows, reference_label)
    )
    current_problem = _window_problem("current", current, cur, config.min_rows, current_label)
    missing = [p for p in (reference_problem, current_problem) if p]
    if vocabulary is None:
        vocabulary_source = "reference window words (halves scored against each other)"
    results: dict[str, CheckResult] = {}
    runnable: list[CheckSpec] = []
    for spec in specs:
        problem = "; ".join(missing) if missing else _check_problem(spec, ref, cur)
        if problem:
            results[spec.name] = CheckResult(
                spec.name,
                spec.family,
                "no_data",
                None,
                drift_checks.threshold(spec, config),
                spec.what,
                spec.runbook_section,
                problem,
            )
        else:
            runnable.append(spec)
    if not missing:
        missing = [f"{spec.name}: {results[spec.name].detail}" for spec in specs if spec.name in results]
    snapshot = None
    if runnable:
        ref_features, cur_features = feature_frames(
            ref, cur, runnable, vocabulary, config, seed, encoder, show_progress
        )
        snapshot, outcome = run_report(ref_features, cur_features, runnable, config)
        for spec in runnable:
            status, score, detail = outcome[spec.name]
            results[spec.name] = CheckResult(
                spec.name,
                spec.family,
                status,
                score,  # type: ignore[arg-type]
                drift_checks.threshold(spec, config),
                spec.what,
                spec.runbook_section,
                detail,
            )
    ordered = [results[s.name] for s in specs]
    for check in ordered:
        if check.status == "drift" and check.name in config.silenced_checks:
            check.status = "silenced"
    if any(c.status == "drift" for c in ordered):
        status: Status = "drift"
    elif any(c.status == "no_data" for c in ordered):
        status = "no_data"
    else:
        status = "ok"
    result = DriftResult(
        run_id=new_run_id(),
        status=status,
        checks=ordered,
        missing=missing,
        reference_rows=0 if ref is None else len(ref),
        current_rows=0 if cur is None else len(cur),
        reference_label=reference_label,
        current_label=current_label,
        vocabulary_source=vocabulary_source or "",
        started_at=started,
        duration_s=round(time.time() - started, 3),
    )
    log.info(
        "drift checked",
        status=status,
        drifted=[c.name for c in result.drifted],
        no_data=[c.name for c in result.no_data],
        seconds=result.duration_s,
    )
    return result, snapshot
