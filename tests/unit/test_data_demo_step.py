"""The demo's data step on a plain DemoContext (it needs no services)."""

from __future__ import annotations

from minielm.config import load_settings
from minielm.data.esci import load_esci
from minielm.demo import DemoContext
from minielm.demo.data_step import DEMO_PRODUCTS, DEMO_QUERIES, data_demo_step
from minielm.search import SearchIndex


def test_data_demo_step_leaves_dataset_index_and_report(tmp_path):
    lines: list[str] = []
    settings = load_settings(environ={}, use_services_state=False)
    ctx = DemoContext(settings=settings, workdir=tmp_path, store=None, echo=lines.append)
    data_demo_step(ctx)
    data = load_esci(ctx.artifacts.dataset_dir)
    assert len(data.products) == DEMO_PRODUCTS and data.examples["query_id"].nunique() == DEMO_QUERIES
    assert len(SearchIndex.load(ctx.artifacts.index_dir)) == DEMO_PRODUCTS
    report = ctx.artifacts.eval_raw_oracle
    assert report["systems"]["oracle"]["relevant_per_query"] > report["systems"]["raw"]["relevant_per_query"]
    assert any("oracle" in line and "%" in line for line in lines)
