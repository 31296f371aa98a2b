"""The Feast repo on local files: apply, offline tables, materialise, push, budgeted lookups, CLI."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from minielm.cli import app
from minielm.config import load_settings
from minielm.features.keys import query_key
from minielm.features.online import FEAST_FALLBACK, OnlineFeatures
from minielm.features.repo import (
    OFFLINE_TABLES,
    SOURCE_REPO,
    FeatureRepoError,
    apply_repo,
    feature_store,
    load_definitions,
    materialize,
    render_feature_store_yaml,
    write_offline_table,
)
from minielm.features.tables import product_feature_table, query_stats_table

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["P1", "P2", "P3"],
        "product_brand": ["Acme", None, "Zed"],
        "category": ["audio", "audio", "shoes"],
        "price": [10.0, 20.0, 30.0],
    }
)
EXAMPLES = pd.DataFrame({"product_id": ["P1", "P1", "P2", "P3"], "esci_label": ["E", "E", "E", "I"]})


def _settings(tmp_path, *extra):
    return load_settings(
        overrides=[f"feast.repo_path={tmp_path / 'repo'}", *extra], environ={}, use_services_state=False
    )


def _fallbacks(reason: str) -> float:
    return FEAST_FALLBACK.labels(reason)._value.get()


def test_tables():
    products = product_feature_table(PRODUCTS, EXAMPLES, now=1_700_000_000)
    assert products.set_index("product_id")["popularity"].to_dict() == {"P1": 1.0, "P2": 0.5, "P3": 0.0}
    assert products["brand"].tolist() == ["Acme", "", "Zed"] and products["rating"].isna().all()
    windows = pd.DataFrame(
        {
            "query": ["Red Shoes", "red  shoes", "hat"],
            "ts": [10.0, 20.0, 5.0],
            "impressions": [10, 10, 0],
            "clicks": [1, 3, 0],
            "add_to_carts": [0, 2, 0],
            "reformulated": [True, False, False],
            "n_results": [0, 5, 0],
        }
    )
    stats = query_stats_table(windows).set_index("query_key")
    red = stats.loc[query_key("red shoes")]
    assert red["volume"] == 2 and red["ctr"] == pytest.approx(0.2) and red["add_to_cart_rate"] == pytest.approx(0.1)
    assert red["reformulation_rate"] == 0.5 and red["zero_result_rate"] == 0.5 and red["last_seen_ts"] == 20.0
    assert stats.loc[query_key("hat"), "ctr"] == 0.0
    with pytest.raises(ValueError, match="missing columns"):
        query_stats_table(windows.drop(columns=["clicks"]))


def test_offline_layouts_are_the_feature_views_of_the_definitions():
    """The core's column lists (the offline tables, the aggregator's pushed frame) follow feature_repo/."""
    from feast import Entity, FeatureView
    from feast.types import Float32, Float64, Int64, String

    dtypes = {Int64: "int64", Float32: "float32", Float64: "float64", String: "string"}
    objects = load_definitions(SOURCE_REPO)
    join_keys = {obj.name: obj.join_key for obj in objects if isinstance(obj, Entity)}
    views = {obj.name: obj for obj in objects if isinstance(obj, FeatureView)}
    for file_name, columns in OFFLINE_TABLES.items():
        view = views[file_name.removesuffix(".parquet")]
        declared = {join_keys[name]: "string" for name in view.entities}
        declared.update({f.name: dtypes[f.dtype] for f in view.features})
        assert declared == columns, file_name


def test_feature_store_yaml_profiles(tmp_path):
    from feast.repo_config import RepoConfig

    local = render_feature_store_yaml(_settings(tmp_path))
    assert local["online_store"] == {"type": "sqlite", "path": str(tmp_path / "repo" / "data" / "online_store.db")}
    assert local["offline_store"]["type"] == "duckdb"
    with pytest.raises(FeatureRepoError, match="feast.offline_root"):
        render_feature_store_yaml(_settings(tmp_path, "feast.profile=cluster"))
    cluster = render_feature_store_yaml(
        _settings(
            tmp_path,
            "feast.profile=cluster",
            "feast.offline_root=s3://b/feast",
            "feast.redis_connection_string=redis.minielm:6379",
        )
    )
    assert cluster["online_store"] == {"type": "redis", "connection_string": "redis.minielm:6379"}
    assert cluster["registry"]["path"].startswith("s3://")
    config = RepoConfig(**cluster, repo_path=tmp_path)
    assert config.online_store.type == "redis"


def test_apply_materialise_push_and_budgeted_lookup(tmp_path):
    settings = _settings(tmp_path)
    repo = apply_repo(settings)
    assert yaml.safe_load((repo / "feature_store.yaml").read_text())["project"] == "minielm"
    store = feature_store(settings)
    assert {fs.name for fs in store.list_feature_services()} == {"rewriter_v1", "ranker_v1"}
    assert {fv.name for fv in store.list_feature_views()} == {"query_stats", "product_features", "rewrite_cache"}
    write_offline_table(settings, "product_features.parquet", product_feature_table(PRODUCTS, EXAMPLES))
    materialize(settings)
    now = time.time()
    windows = pd.DataFrame(
        {
            "query": ["red shoes"],
            "ts": [now],
            "impressions": [4],
            "clicks": [1],
            "add_to_carts": [0],
            "reformulated": [False],
            "n_results": [3],
        }
    )
    store.push("query_stats_push", query_stats_table(windows))

    online = OnlineFeatures(settings)
    online.warm_up()
    missing_before = _fallbacks("missing")
    known, unknown = online.query_features(["Red Shoes", "never seen"])
    assert known["source"] == "feast" and known["volume"] == 1 and known["ctr"] == pytest.approx(0.25)
    assert unknown["source"] == "default" and unknown["volume"] == 0
    p1, nope = online.product_features(["P1", "NOPE"])
    # ESCI has no ratings: the rating falls back to its default, the rest comes from Feast.
    assert p1["source"] == "partial" and p1["brand"] == "Acme" and p1["price"] == 10.0 and p1["rating"] == 0.0
    assert nope["source"] == "default"
    assert _fallbacks("missing") - missing_before == 3
    online.close()

    strict = OnlineFeatures(
        settings.model_copy(update={"feast": settings.feast.model_copy(update={"online_timeout_ms": 5.0})})
    )
    read = strict._read

    def slow_read(*args):  # a store slower than the budget (the process shares one warm store)
        time.sleep(0.2)
        return read(*args)

    strict._read = slow_read
    timeouts_before = _fallbacks("timeout")
    row = strict.query_features(["red shoes"])[0]
    assert row["source"] == "default" and _fallbacks("timeout") - timeouts_before == 1
    strict.close()


def test_cli_apply_and_bad_profile(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["features", "apply", "--repo-path", str(tmp_path / "cli-repo")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli-repo" / "feature_store.yaml").is_file()
    bad = runner.invoke(app, ["features", "apply", "--profile", "mars"])
    assert bad.exit_code == 2 and "--profile" in bad.output
    missing = runner.invoke(app, ["serve", "--rewriter-path", str(tmp_path / "nope"), "--no-services"])
    assert missing.exit_code == 2 and "--rewriter-path" in missing.output
    bad_stage = runner.invoke(app, ["serve", "--stage", "staging", "--no-services"])
    assert bad_stage.exit_code == 2
