"""The drift monitor's verdicts, counted: no alert on same-distribution windows, alerts on injected shifts,
"no data" (never a silent pass) on missing input, and a self-contained HTML report."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from minielm.drift import simulate
from minielm.drift.monitor import run_drift
from tests.unit.drift_fixtures import (
    SAME_DISTRIBUTION_SEEDS,
    catalog_words,
    current_window,
    drift_config,
    encoder,
    reference_window,
)

pytestmark = pytest.mark.filterwarnings("ignore")


def check(reference, current, config=None, **kwargs):
    return run_drift(
        reference,
        current,
        config or drift_config(),
        vocabulary=catalog_words(),
        vocabulary_source="synthetic catalog",
        encoder=encoder(),
        **kwargs,
    )


@pytest.mark.slow
def test_same_distribution_windows_raise_no_alert_in_n_of_n_runs():
    reference = reference_window()
    verdicts = {seed: check(reference, current_window(seed))[0] for seed in SAME_DISTRIBUTION_SEEDS}
    alerts = {seed: [c.name for c in r.drifted] for seed, r in verdicts.items() if r.status != "ok"}
    print(f"same-distribution windows: {len(verdicts) - len(alerts)} of {len(verdicts)} without alert")
    assert alerts == {}
    # Every check ran and scored below its threshold: an "ok" is never a check that was skipped.
    for result in verdicts.values():
        assert all(c.status == "ok" and c.score is not None and c.score <= c.threshold for c in result.checks)


SHIFTS = {
    "new product categories": (
        lambda w: simulate.with_new_categories(w, 0.3, seed=1),
        {"query_embeddings", "query_oov_share"},
    ),
    "different language mix": (
        lambda w: simulate.with_language_mix(w, 0.3, seed=1),
        {"query_embeddings", "query_non_ascii_share", "query_oov_share"},
    ),
    "broken rewriter echoes the query": (None, {"rewrite_identical_share", "rewrite_edit_distance"}),
    "click-through collapse": (lambda w: simulate.with_ctr_collapse(w, keep=0.3, seed=1), {"ctr", "reward"}),
}


@pytest.mark.parametrize("shift", list(SHIFTS))
def test_injected_shift_raises_an_alert_naming_the_check(shift):
    make, expected = SHIFTS[shift]
    current = current_window(1, broken_rewriter=True) if make is None else make(current_window(1))
    result, snapshot = check(reference_window(), current)
    drifted = {c.name for c in result.drifted}
    print(f"{shift}: status {result.status}, drifted {sorted(drifted)}")
    assert result.status == "drift"
    assert expected <= drifted
    tests = snapshot.dict()["tests"]
    assert sum(str(getattr(t["status"], "value", t["status"])) == "FAIL" for t in tests) == len(drifted)


def test_outcome_and_rewrite_checks_do_not_fire_on_a_query_shift_alone():
    result, _ = check(reference_window(), simulate.with_language_mix(current_window(1), 0.3, seed=1))
    assert {"ctr", "reformulation_rate", "zero_result_rate", "reward"}.isdisjoint(c.name for c in result.drifted)


def test_empty_current_window_is_no_data_not_ok():
    result, snapshot = check(reference_window(), reference_window().iloc[0:0])
    assert result.status == "no_data" and snapshot is None
    assert result.missing == ["current window has 0 requests with a query, fewer than drift.min_rows=30"]
    assert {c.status for c in result.checks} == {"no_data"}


def test_missing_reference_names_what_is_missing():
    result, _ = check(
        None,
        current_window(1),
        missing_reference_reason="reference: no feedback windows under s3://minielm/feedback/windows/",
    )
    assert result.status == "no_data"
    assert "no feedback windows" in result.missing[0]
    assert all(c.score is None for c in result.checks)


def test_window_without_outcome_columns_is_no_data_for_those_checks_only():
    current = current_window(1).drop(columns=["clicks", "reward"])
    result, _ = check(reference_window(), current, config=drift_config(checks=["outcomes", "rewrites"]))
    by_name = {c.name: c for c in result.checks}
    assert result.status == "no_data"
    assert by_name["ctr"].status == "no_data" and "['clicks']" in by_name["ctr"].detail
    assert by_name["reward"].status == "no_data" and "['reward']" in by_name["reward"].detail
    assert by_name["reformulation_rate"].status == "ok"
    assert any(m.startswith("ctr: current window lacks column(s) ['clicks']") for m in result.missing)


def test_window_without_a_query_column_is_no_data():
    current = current_window(1).drop(columns=["query"])
    result, _ = check(reference_window(), current, config=drift_config(checks=["outcomes"]))
    assert result.status == "no_data"
    assert "has no 'query' column" in result.missing[0]


def test_a_drift_still_shows_alongside_missing_columns():
    current = simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1).drop(columns=["n_results"])
    result, _ = check(reference_window(), current, config=drift_config(checks=["outcomes"]))
    assert result.status == "drift"
    assert {c.name for c in result.no_data} == {"zero_result_rate"}


def test_silenced_check_neither_alerts_nor_counts():
    current = simulate.with_ctr_collapse(current_window(1), keep=0.3, seed=1)
    config = drift_config(checks=["outcomes"], silenced_checks=["ctr", "reformulation_rate", "reward"])
    result, _ = check(reference_window(), current, config=config)
    assert result.status == "ok"
    assert {c.name for c in result.checks if c.status == "silenced"} == {"ctr", "reformulation_rate", "reward"}


def test_html_report_is_self_contained(tmp_path):
    _, snapshot = check(reference_window(), simulate.with_language_mix(current_window(1), 0.3, seed=1))
    path = tmp_path / "report.html"
    snapshot.save_html(str(path))
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html") or text.lstrip().lower().startswith("<html")
    # Nothing is fetched when it opens: no external scripts, styles or frames.
    external = re.findall(r"""<(?:script|link|iframe|img)[^>]+(?:src|href)\s*=\s*["']?(?:https?:)?//""", text, re.I)
    assert external == []
    assert len(re.findall(r"<script", text, re.I)) >= 1
    for name in ("query_embedding", "query_oov_share", "clicked", "rewrite_edit_distance"):
        assert name in text
    assert text.count("</html>") >= 1


def test_real_esci_queries_against_a_synthetic_reference(shared_dir):
    """What the monitor says about real ESCI queries when the reference is the synthetic traffic."""
    from minielm.data.esci import read_queryset

    queries = read_queryset(shared_dir / "data" / "esci-sample" / "esci_us_queryset.json")
    current = pd.DataFrame({"query": queries})
    result, _ = check(reference_window(), current, config=drift_config(checks=["embeddings", "descriptors"]))
    print("\n".join(result.summary_lines()))
    assert result.status == "drift"
    drifted = {c.name for c in result.drifted}
    assert {"query_embeddings", "query_oov_share"} <= drifted
    # The sample has queries only: rewrite checks say what is missing instead of passing.
    assert all(c.status == "no_data" and "'rewrite'" in c.detail for c in result.checks if c.name.startswith("rewrite"))


def test_a_reference_of_one_repeated_query_is_no_data_for_embeddings():
    reference = reference_window().assign(query="red shirt")
    result, _ = check(reference, current_window(1), config=drift_config(checks=["embeddings"]))
    assert result.status == "no_data"
    assert result.checks[0].detail == "reference window has fewer than 2 distinct queries"
