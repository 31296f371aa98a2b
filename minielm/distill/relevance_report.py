"""The augmentation scaling curve as a self-contained HTML page (inline SVG, no plotting library).

``scaling`` is the benchmark's list of ``{augmented_pairs, ndcg_at_10, macro_f1}`` points; the teacher's
and the baselines' nDCG@10 are drawn as horizontal reference lines. The training pipeline's HTML
report can embed :func:`scaling_curve_svg` as it is.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, MARGIN = 560, 320, 56
SERIES = (("ndcg_at_10", "student nDCG@10", "#1f77b4"), ("macro_f1", "student macro-F1", "#ff7f0e"))
REFERENCE_COLOURS = ("#2ca02c", "#7f7f7f", "#d62728", "#9467bd")


def _scale(values: Sequence[float], low: float, high: float, out_low: float, out_high: float) -> list[float]:
    span = (high - low) or 1.0
    return [out_low + (v - low) / span * (out_high - out_low) for v in values]


def scaling_curve_svg(scaling: Sequence[Mapping[str, Any]], references: Mapping[str, float] | None = None) -> str:
    """An SVG line chart: x = augmented pairs (evenly spaced, labelled), y = metric value."""
    if not scaling:
        raise ValueError("scaling curve: no points to draw")
    references = dict(references or {})
    xs = _scale(list(range(len(scaling))), 0, max(1, len(scaling) - 1), MARGIN, WIDTH - MARGIN)
    values = [float(p[key]) for p in scaling for key, _, _ in SERIES] + list(references.values())
    low, high = max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.05)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="11">',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN / 2}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">teacher-labelled augmented pairs</text>',
    ]
    for tick in range(5):
        value = low + (high - low) * tick / 4
        (y,) = _scale([value], low, high, HEIGHT - MARGIN, MARGIN / 2)
        parts.append(f'<text x="{MARGIN - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    for x, point in zip(xs, scaling):
        label = f"{int(point['augmented_pairs']):,}"
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">{label}</text>')
    legend_y = MARGIN / 2
    for key, name, colour in SERIES:
        ys = _scale([float(p[key]) for p in scaling], low, high, HEIGHT - MARGIN, MARGIN / 2)
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in zip(xs, ys)]
        parts.append(f'<text x="{WIDTH - MARGIN + 4}" y="{legend_y}" fill="{colour}">{html.escape(name)}</text>')
        legend_y += 14
    for (name, value), colour in zip(references.items(), REFERENCE_COLOURS):
        (y,) = _scale([value], low, high, HEIGHT - MARGIN, MARGIN / 2)
        parts.append(
            f'<line x1="{MARGIN}" y1="{y:.1f}" x2="{WIDTH - MARGIN}" y2="{y:.1f}" stroke="{colour}" '
            'stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{WIDTH - MARGIN + 4}" y="{legend_y}" fill="{colour}">{html.escape(name)}</text>')
        legend_y += 14
    parts.append("</svg>")
    return "\n".join(parts)


def write_scaling_report(result: Mapping[str, Any], path: Path | str) -> Path:
    """An HTML page with the scaling curve and its table, from the benchmark's JSON result."""
    scaling = result["scaling"]
    references = {}
    if result.get("teacher"):
        references["teacher nDCG@10"] = float(result["teacher"]["ndcg@10"])
    if result.get("bm25_baseline"):
        references["BM25 nDCG@10"] = float(result["bm25_baseline"]["ndcg@10"])
    rows = "\n".join(
        f"<tr><td>{int(p['augmented_pairs']):,}</td><td>{int(p.get('train_triples', 0)):,}</td>"
        f"<td>{int(p.get('steps', 0))}</td><td>{p['ndcg_at_10']:.4f}</td><td>{p['macro_f1']:.4f}</td></tr>"
        for p in scaling
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Relevance distillation: augmentation scaling</title></head>
<body style="font-family: sans-serif">
<h2>Relevance student vs teacher-labelled augmented pairs</h2>
<p>Each point is a fresh student trained without gold labels on the labelled set's pairs (teacher labels)
plus the given number of augmented pairs, with the same number of passes over its data. Dashed lines:
reference nDCG@10 on the same held-out pairs.</p>
{scaling_curve_svg(scaling, references)}
<table border="1" cellpadding="4" style="border-collapse: collapse">
<tr><th>augmented pairs</th><th>train triples</th><th>steps</th><th>nDCG@10</th><th>macro-F1</th></tr>
{rows}
</table>
<p>Command: <code>{html.escape(str(result.get("command", "")))}</code></p>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
