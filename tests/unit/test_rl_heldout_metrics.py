"""RL's held-out table reports unseen noise apart, so a lift on memorised forms cannot pass for generalisation."""

from __future__ import annotations

from minielm.config import load_settings
from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.evaluation import oracle_queries
from minielm.rl.retraining import heldout_metrics
from minielm.search import SearchIndex


def test_heldout_metrics_split_seen_and_unseen_noise(tmp_path):
    data = generate_dataset(n_products=800, n_queries=500, seed=2)
    write_esci(data, tmp_path / "data")
    settings = load_settings(environ={}, use_services_state=False)
    test = data.examples[data.examples["split"] == settings.rl.heldout_split]
    canonical = {q: oracle_queries(test)[i] for i, q in zip(test["query_id"], test["query"])}

    report = heldout_metrics(
        settings,
        SearchIndex.build(data.products),
        tmp_path / "data",
        {"raw": None, "oracle": lambda queries: [canonical[q] for q in queries]},
    )

    raw, oracle = report["raw"]["by_novelty"], report["oracle"]["by_novelty"]
    assert {"seen", "unseen"} <= set(raw)
    assert sum(group["n_queries"] for group in raw.values()) == report["raw"]["n_queries"]
    assert oracle["unseen"]["relevant_per_query"] > raw["unseen"]["relevant_per_query"]


def test_heldout_queries_served_as_traffic_are_left_out_of_every_figure(tmp_path):
    data = generate_dataset(n_products=400, n_queries=200, seed=3)
    write_esci(data, tmp_path / "data")
    settings = load_settings(environ={}, use_services_state=False)
    test_ids = sorted(set(data.examples.loc[data.examples["split"] == settings.rl.heldout_split, "query_id"]))
    traffic = set(test_ids[: len(test_ids) // 2])
    seen_by_system: list[str] = []

    def recording(queries):
        seen_by_system.extend(queries)
        return list(queries)

    index = SearchIndex.build(data.products)
    full = heldout_metrics(settings, index, tmp_path / "data", {"raw": None})
    report = heldout_metrics(settings, index, tmp_path / "data", {"raw": None, "echo": recording}, traffic)

    assert report["raw"]["n_queries"] == full["raw"]["n_queries"] - len(traffic)
    traffic_queries = set(data.examples.loc[data.examples["query_id"].isin(traffic), "query"])
    assert seen_by_system and not traffic_queries & set(seen_by_system)
