"""The rewriter quality report as one self-contained HTML page (no scripts, no external files).

Reads a :func:`minielm.evaluation.quality_report` dict (optionally with ``real_queries``: system ->
:func:`~minielm.evaluation.real_queries_safety` summary, and ``data``/``split``/``command``) and draws:
the summary table, relevant@k bars per noise class and for seen vs unseen noise, harm rates, and
example rewrites with harmed ones flagged. ``minielm eval`` writes it beside its JSON; the training
pipeline can attach it as a KFP HTML artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

# Display order and colours; systems outside this list come after, in grey.
SYSTEM_COLOURS = {
    "raw": "#9e9e9e",
    "baseline": "#f0a030",
    "teacher": "#3b7dd8",
    "student": "#2e9e5b",
    "oracle": "#7a4fc9",
}
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f5f5f5}td.l,th.l{text-align:left}.bad{color:#b00020;font-weight:600}.good{color:#1b7f3b}
.group{margin:6px 0 12px}.group .name{font-weight:600;font-size:13px;margin-bottom:2px}
.bar{display:flex;align-items:center;font-size:12px;height:16px;margin:1px 0}
.bar .label{width:80px}.bar .fill{height:12px;border-radius:2px}.bar .value{margin-left:6px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;border-radius:2px}.muted{color:#777;font-size:12px}
"""


def _colour(name: str) -> str:
    return SYSTEM_COLOURS.get(name, "#bbbbbb")


def _order(names) -> list[str]:
    known = [n for n in SYSTEM_COLOURS if n in names]
    return known + [n for n in names if n not in SYSTEM_COLOURS]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _bars(groups: Mapping[str, Mapping[str, float | None]], systems: list[str], scale: float) -> str:
    """One block per group, one horizontal bar per system."""
    out = []
    for group, values in groups.items():
        rows = []
        for name in systems:
            value = values.get(name)
            if value is None:
                continue
            width = 0 if scale <= 0 else max(1, int(360 * value / scale))
            rows.append(
                f'<div class="bar"><span class="label">{escape(name)}</span>'
                f'<span class="fill" style="width:{width}px;background:{_colour(name)}"></span>'
                f'<span class="value">{value:.3f}</span></div>'
            )
        out.append(f'<div class="group"><div class="name">{escape(group)}</div>{"".join(rows)}</div>')
    return "".join(out)


def _legend(systems: list[str]) -> str:
    items = "".join(f'<span><i style="background:{_colour(n)}"></i>{escape(n)}</span>' for n in systems)
    return f'<div class="legend">{items}</div>'


def _pivot(by_system: Mapping[str, Mapping[str, Mapping[str, Any]]], key: str) -> dict[str, dict[str, float]]:
    """system -> group -> metrics  to  group -> system -> metrics[key]."""
    groups: dict[str, dict[str, float]] = {}
    for system, by_group in by_system.items():
        for group, metrics in by_group.items():
            groups.setdefault(group, {})[system] = metrics.get(key)
    return groups


def _summary_table(report: Mapping[str, Any], systems: list[str]) -> str:
    k = report["k"]
    gains = report.get("gain_over_raw", {})
    harm = report.get("harm", {})
    real = report.get("real_queries", {})
    novelty = report.get("by_novelty", {})
    head = (
        f"<tr><th class=l>system</th><th>relevant@{k}</th><th>unseen noise</th><th>seen noise</th>"
        f"<th>nDCG@{k}</th><th>recall@{k}</th><th>zero-result</th><th>vs raw</th>"
        "<th>harm rate (clean + out-of-catalog)</th><th>real queries safe</th></tr>"
    )
    rows = []
    for name in systems:
        m = report["systems"][name]
        relative = gains.get(name, {}).get("relative")
        harm_rate = (harm.get(name) or {}).get("harm_rate")
        safe = (real.get(name) or {}).get("safe_share")
        by_novelty = novelty.get(name, {})
        cells = [
            f"<td class=l><b>{escape(name)}</b></td>",
            f"<td>{m['relevant_per_query']:.3f}</td>",
            f"<td>{by_novelty.get('unseen', {}).get('relevant_per_query', float('nan')):.3f}</td>",
            f"<td>{by_novelty.get('seen', {}).get('relevant_per_query', float('nan')):.3f}</td>",
            f"<td>{m['ndcg']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['zero_result_rate']:.1%}</td>",
            f"<td>{'n/a' if relative is None else f'{relative:+.1%}'}</td>",
            f"<td class={'bad' if harm_rate and harm_rate > 0.02 else 'good'}>{_pct(harm_rate)}</td>",
            f"<td class={'bad' if safe is not None and safe < 0.95 else 'good'}>{_pct(safe)}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _harm_table(report: Mapping[str, Any], systems: list[str]) -> str:
    by_noise = report.get("harm_by_noise", {})
    classes = sorted({c for name in systems for c in by_noise.get(name, {})})
    if not classes:
        return "<p class=muted>no noise classes in this data</p>"
    head = "<tr><th class=l>noise class</th>" + "".join(f"<th>{escape(n)}</th>" for n in systems) + "</tr>"
    rows = []
    for cls in classes:
        cells = []
        for name in systems:
            entry = by_noise.get(name, {}).get(cls)
            if entry is None:
                cells.append("<td>n/a</td>")
                continue
            rate = entry["harm_rate"]
            cells.append(f"<td class={'bad' if rate > 0.02 else 'good'}>{rate:.1%}</td>")
        n = next((by_noise[s][cls]["n_queries"] for s in systems if cls in by_noise.get(s, {})), 0)
        rows.append(f"<tr><td class=l>{escape(cls)} <span class=muted>({n})</span></td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _examples(report: Mapping[str, Any], systems: list[str]) -> str:
    parts = []
    for name in systems:
        rows = report.get("examples", {}).get(name) or []
        if not rows or name == "raw":
            continue
        body = []
        for e in rows:
            harm = e.get("harm") or []
            flag = f"<span class=bad>{escape('; '.join(harm))}</span>" if harm else ""
            body.append(
                f"<tr><td class=l>{escape(str(e.get('query', '')))}</td><td class=l>{escape(str(e.get('rewrite', '')))}"
                f"</td><td class=l>{escape(str(e.get('canonical') or ''))}</td>"
                f"<td class=l>{escape(', '.join(e.get('classes') or []))}</td>"
                f"<td>{e.get('relevant_raw', '')} &rarr; {e.get('relevant', '')}</td><td class=l>{flag}</td></tr>"
            )
        parts.append(
            f"<h3>{escape(name)}</h3><table><tr><th class=l>query</th><th class=l>rewrite</th>"
            f"<th class=l>canonical</th><th class=l>classes</th><th>relevant raw &rarr; rewrite</th>"
            f"<th class=l>harm</th></tr>{''.join(body)}</table>"
        )
    real = report.get("real_queries", {})
    for name in systems:
        harmed = (real.get(name) or {}).get("harmed_examples") or []
        if harmed:
            body = "".join(
                f"<tr><td class=l>{escape(e['query'])}</td><td class=l>{escape(e['rewrite'])}</td>"
                f"<td class=l><span class=bad>{escape('; '.join(e['reasons']))}</span></td></tr>"
                for e in harmed[:10]
            )
            parts.append(
                f"<h3>{escape(name)}: harmed real queries</h3><table><tr><th class=l>query</th>"
                f"<th class=l>rewrite</th><th class=l>harm</th></tr>{body}</table>"
            )
    return "".join(parts)


def render_html_report(report: Mapping[str, Any]) -> str:
    """The report as an HTML string."""
    systems = _order(list(report["systems"]))
    k = report["k"]
    by_noise = _pivot(report.get("by_noise", {}), "relevant_per_query")
    by_novelty = _pivot(report.get("by_novelty", {}), "relevant_per_query")
    scale = max(
        [v for groups in (by_noise, by_novelty) for values in groups.values() for v in values.values() if v] or [1.0]
    )
    context = " &middot; ".join(
        escape(f"{key}: {report[key]}") for key in ("data", "split", "command") if report.get(key) is not None
    )
    novelty_note = (
        "unseen: the query's noise holds an edit no training query shows; seen: every edit appears in training"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>MiniELM rewriter quality</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Rewriter quality: {report['n_queries']} held-out queries, k={k}</h1>"
        f"<p class=muted>{context}</p>{_legend(systems)}"
        f"<h2>Summary</h2>{_summary_table(report, systems)}"
        "<p class=muted>harm: the rewrite loses a content word or changes intent (negation, brand, size, "
        "model number); target at most 2% on clean and out-of-catalog queries and at least 95% of real "
        "queries safe.</p>"
        f"<h2>relevant@{k}: seen vs unseen noise</h2><p class=muted>{novelty_note}</p>"
        f"{_bars(by_novelty, systems, scale)}"
        f"<h2>relevant@{k} per noise class</h2>{_bars(by_noise, systems, scale)}"
        f"<h2>Harm rate per noise class</h2>{_harm_table(report, systems)}"
        f"<h2>Example rewrites (harmed first)</h2>{_examples(report, systems)}"
        "</body></html>"
    )


def write_html_report(report: Mapping[str, Any], path: Path | str) -> Path:
    """Write :func:`render_html_report` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html_report(report), encoding="utf-8")
    return path
