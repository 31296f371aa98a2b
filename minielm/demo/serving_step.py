"""Demo step: serve the production student models over HTTP and send a few real requests.

Needs ``dataset_dir`` and ``index_dir`` (data step), ``student_rewriter_dir`` and
``student_relevance_dir`` (distillation step; used only when the registry has no production version).
Leaves the server running for later steps: produces ``serving_url`` and ``serving_stop``.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from minielm.features.repo import apply_repo, materialize, write_offline_table
from minielm.features.tables import product_feature_table
from minielm.registry import ModelRegistry
from serving.app import PIPELINE_NAME, build_stack, serve_stack

DEMO_QUERIES = 4


def _local_fallback(ctx, name: str, key: str) -> Path | None:
    """None when the registry's production stage has the model; else the local dir from an earlier step."""
    if ModelRegistry(ctx.store).stage(name, "production") is not None:
        return None
    ctx.artifacts.require(key, step=f"serving ({name} has no production version in the registry)")
    ctx.echo(f"  {name}: no production version in the registry; serving {getattr(ctx.artifacts, key)}")
    return Path(getattr(ctx.artifacts, key))


def serving_demo_step(ctx) -> None:
    from minielm.data.esci import load_esci

    settings = ctx.settings.model_copy(deep=True)
    ctx.artifacts.require("dataset_dir", "index_dir", step="serving")
    dataset_dir = ctx.artifacts.dataset_dir
    data = load_esci(dataset_dir)

    repo = apply_repo(settings)
    write_offline_table(settings, "product_features.parquet", product_feature_table(data.products, data.examples))
    materialize(settings)
    ctx.echo(f"  Feast repo applied at {repo}; {len(data.products)} products' features materialised")
    ctx.artifacts.feast_repo_path = Path(repo)

    settings.serving.rewriter_path = _local_fallback(ctx, settings.models.student_rewriter, "student_rewriter_dir")
    settings.serving.relevance_path = _local_fallback(ctx, settings.models.student_relevance, "student_relevance_dir")
    settings.serving.index_dir = ctx.artifacts.index_dir
    settings.serving.dataset_dir = dataset_dir
    stack = build_stack(settings)
    running = serve_stack(stack, settings, port=0)
    ctx.artifacts.serving_url = running.url
    ctx.artifacts.serving_stop = running.stop
    ctx.artifacts.serving_models = {m.name: m.version for m in stack.models}
    ctx.echo(
        f"  model server at {running.url}: " + ", ".join(f"{n} {v}" for n, v in ctx.artifacts.serving_models.items())
    )

    held_out = data.examples[data.examples["split"] == "test"]
    queries = (held_out if len(held_out) else data.examples)["query"].drop_duplicates().head(DEMO_QUERIES).tolist()
    with httpx.Client(base_url=running.url, timeout=60) as client:
        response = client.post(
            f"/v1/models/{PIPELINE_NAME}:predict",
            json={"instances": [{"query": q} for q in queries], "parameters": {"k": 3}},
        )
        response.raise_for_status()
        body = response.json()
        ctx.echo(
            f"  POST /v1/models/{PIPELINE_NAME}:predict -> {body['model_name']} {body['model_version']} "
            f"(request {body['request_id']})"
        )
        for prediction in body["predictions"]:
            ctx.echo(f"    {prediction['query']!r} -> {prediction['rewrite']!r}")
            for product in prediction["products"]:
                relevance = product.get("relevance")
                ctx.echo(
                    f"        {product['product_id']}  {product.get('title', '')[:60]}"
                    + (f"  (relevance {relevance:.2f})" if relevance is not None else "")
                )
        v2 = client.post(
            f"/v2/models/{settings.models.student_rewriter}/infer",
            json={"inputs": [{"name": "query", "shape": [1], "datatype": "BYTES", "data": [queries[0]]}]},
        )
        v2.raise_for_status()
        rewrite = next(o for o in v2.json()["outputs"] if o["name"] == "rewrite")["data"][0]
        ctx.echo(f"  POST /v2/models/{settings.models.student_rewriter}/infer -> {rewrite!r}")
        bad = client.post(f"/v1/models/{settings.models.student_rewriter}:predict", json={"instances": [{"query": ""}]})
        ctx.echo(f"  a bad request gets HTTP {bad.status_code}: {bad.json()['error']}")
    ctx.artifacts.serving_demo = {"queries": queries, "predictions": body["predictions"]}
