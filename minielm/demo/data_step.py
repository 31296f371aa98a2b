"""The demo's data step: a small synthetic catalog, its BM25 index and the raw / baseline / oracle table."""

from __future__ import annotations

import json
from pathlib import Path

from minielm.baseline import PhraseTableRewriter
from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.evaluation import compare_rewriters, format_report_table, oracle_queries, raw_queries
from minielm.search import SearchIndex

DEMO_PRODUCTS = 2000
DEMO_QUERIES = 5000  # the tiny teacher needs thousands of pairs to learn the noise and beat raw queries


def data_demo_step(ctx) -> None:
    """Generate the catalog into ``workdir/data``, index it into ``workdir/index``, print raw, the
    phrase-table baseline (mined from the train split) and the oracle.

    Produces ``dataset_dir``, ``index_dir`` and ``eval_raw_oracle`` (the report without per-query
    detail, on the test split).
    """
    settings = ctx.settings
    dataset = generate_dataset(n_products=DEMO_PRODUCTS, n_queries=DEMO_QUERIES, seed=settings.seed)
    dataset_dir = write_esci(dataset, ctx.workdir / "data")
    index = SearchIndex.build(dataset.products)
    index_dir = index.save(ctx.workdir / "index")
    queries = dataset.queries()
    ctx.echo(
        f"  generated {len(dataset.products)} products and {len(queries)} queries "
        f"({ {k: int(v) for k, v in queries['split'].value_counts().items()} }) into {dataset_dir}; "
        f"BM25 index in {index_dir}"
    )
    for _, row in queries[queries["noise"] != ""].head(3).iterrows():
        ctx.echo(f"    {row['query']!r} -> oracle {row['canonical_query']!r} ({row['noise']})")
    test = dataset.split("test").examples
    report = compare_rewriters(
        index,
        test,
        {
            "raw": raw_queries(test),
            "baseline": PhraseTableRewriter.fit(dataset.products, dataset.examples),
            "oracle": oracle_queries(test),
        },
        k=settings.eval.top_k,
        substitute_is_relevant=settings.eval.substitute_is_relevant,
    )
    report.pop("per_query")
    report["split"] = "test"
    for line in format_report_table(report).splitlines():
        ctx.echo(f"  {line}")
    (ctx.workdir / "eval_raw_oracle.json").write_text(json.dumps(report, indent=2))
    ctx.artifacts.dataset_dir = Path(dataset_dir)
    ctx.artifacts.index_dir = Path(index_dir)
    ctx.artifacts.eval_raw_oracle = report
