"""The demo's drift step: check the latest feedback windows against the first ones, print the verdict.

Reads ``feedback_window_keys`` (window objects the feedback step wrote; the
older half of each partition's windows is the reference, the newer half the current traffic) and
``dataset_dir`` (the synthetic dataset: its products give the catalog vocabulary, and without
windows its train-split queries are the reference and its validation/test-split queries the current
window, with the dataset's canonical rewrites). Produces ``drift_summary``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from minielm.drift.job import run_drift_job
from minielm.drift.sources import split_halves


def _split_frames(dataset_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from minielm.data.esci import load_esci

    examples = load_esci(dataset_dir).examples
    queries = examples.drop_duplicates("query_id")
    rewrites = queries["canonical_query"] if "canonical_query" in queries else queries["query"]
    frame = pd.DataFrame(
        {"query": queries["query"].to_numpy(), "rewrite": rewrites.to_numpy(), "split": queries["split"].to_numpy()}
    )
    return (
        frame[frame["split"] == "train"].reset_index(drop=True),
        frame[frame["split"] != "train"].reset_index(drop=True),
    )


def drift_demo_step(ctx) -> None:
    settings = ctx.settings
    dataset_dir = ctx.artifacts.dataset_dir
    catalog = Path(dataset_dir) if dataset_dir else None
    keys = list(ctx.artifacts.feedback_window_keys or [])
    out_dir = Path(ctx.workdir) / "drift"
    if len(keys) >= 2:
        reference_keys, current_keys = split_halves(keys)
        ctx.echo(f"  reference: {len(reference_keys)} older feedback window(s); current: {len(current_keys)} newer")
        result = run_drift_job(
            settings,
            store=ctx.store,
            out_dir=out_dir,
            reference_keys=reference_keys,
            current_keys=current_keys,
            catalog_path=catalog,
        )
    elif dataset_dir:
        reference, current = _split_frames(Path(dataset_dir))
        ctx.echo(
            f"  no feedback windows yet: train-split queries ({len(reference)}) vs validation/test-split "
            f"queries ({len(current)}) of {dataset_dir}, with its canonical rewrites"
        )
        settings = settings.model_copy(
            update={"drift": settings.drift.model_copy(update={"checks": ["embeddings", "descriptors", "rewrites"]})}
        )
        result = run_drift_job(
            settings,
            store=ctx.store,
            out_dir=out_dir,
            reference=reference,
            current=current,
            reference_label="train split",
            current_label="validation+test split",
            catalog_path=catalog,
            use_windows=False,
        )
    else:
        ctx.artifacts.require("dataset_dir", step="drift (fewer than two feedback windows)")
    for line in result.summary_lines():
        ctx.echo(f"  {line}")
    ctx.echo(f"  HTML report: {result.outputs['report_path']}")
    if "report_key" in result.outputs:
        ctx.echo(f"  on S3: {result.outputs['report_url']}")
    ctx.artifacts.drift_summary = result.to_dict()
