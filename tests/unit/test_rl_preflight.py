"""Bad input stops an RL run before training, with a message naming what is missing (S3 mocked by moto)."""

from __future__ import annotations

import pandas as pd
import pytest
from moto import mock_aws

from minielm.config import load_settings
from minielm.registry import ModelRegistry
from minielm.rl.errors import RLInputError
from minielm.rl.feedback import WINDOW_COLUMNS
from minielm.rl.retraining import prepare_training_set, run_retraining
from minielm.storage import ObjectStore
from tests.unit.rl_fixtures import save_tiny_llama


@pytest.fixture()
def env(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        settings = load_settings(
            overrides=["s3.endpoint_url=null", "rl.min_new_requests=1"], environ={}, use_services_state=False
        )
        store = ObjectStore(settings.s3)
        store.ensure_bucket()
        yield settings, store, ModelRegistry(store)


def register_production(settings, registry, tmp_path):
    entry = registry.register(settings.models.student_rewriter, save_tiny_llama(tmp_path / "model"))
    registry.promote(entry.name, entry.version, "production")
    return entry


def write_window(store, version, model_name="student-rewriter", reward=1.0, n=4):
    rows = [
        {
            "request_id": f"r{i}",
            "query": f"red shoe {i}",
            "query_key": "",
            "rewrite": "red shoe",
            "model_name": model_name,
            "model_version": version,
            "ts": 1.0,
            "n_results": 3,
            "impressions": 3,
            "clicks": 1,
            "add_to_carts": 0,
            "purchases": 0,
            "reformulated": False,
            "reward": reward,
        }
        for i in range(n)
    ]
    key = f"feedback/windows/topic=minielm.rewrites/partition=0/offsets=0-{n - 1}.parquet"
    store.put_parquet(key, pd.DataFrame(rows, columns=list(WINDOW_COLUMNS)))
    return key


def test_a_registry_without_production_stops_the_run_first(env, tmp_path):
    settings, store, _ = env
    write_window(store, "v1")
    with pytest.raises(RLInputError, match="no production version of 'student-rewriter'"):
        run_retraining(settings, store, tmp_path / "no-data-read", tmp_path / "no-index", None, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.parquet"))


def test_windows_of_another_model_are_no_usable_feedback(env, tmp_path):
    settings, store, registry = env
    register_production(settings, registry, tmp_path)
    write_window(store, "logged", model_name="ubi-replay")
    with pytest.raises(RLInputError, match="no usable feedback.*no request served by 'student-rewriter'.*ubi-replay"):
        prepare_training_set(settings, store, tmp_path / "data", tmp_path / "prepared")


def test_windows_without_rewards_are_no_usable_feedback(env, tmp_path):
    settings, store, registry = env
    entry = register_production(settings, registry, tmp_path)
    write_window(store, entry.version, reward=float("nan"))
    with pytest.raises(RLInputError, match="no usable feedback.*has a reward"):
        prepare_training_set(settings, store, tmp_path / "data", tmp_path / "prepared")
    assert registry.stage(settings.models.student_rewriter, "production").version == entry.version


def test_a_baseline_in_production_is_served_but_not_trained(env, tmp_path):
    """When every learned student failed its gate the baseline serves; RL refuses it before reading anything."""
    from minielm.data.esci import write_esci
    from minielm.data.synthetic import generate_dataset
    from minielm.distill.stages import register_baseline_rewriter
    from serving.loading import load_model_dir

    settings, store, registry = env
    write_esci(generate_dataset(n_products=200, n_queries=40, seed=3), tmp_path / "data")
    report = {"rewriter": {"systems": {"baseline": {"relevant_per_query": 1.0}}}, "split": "test"}
    version = register_baseline_rewriter(
        settings, store, tmp_path / "data", tmp_path / "baseline", report, reason="students failed the gate"
    )
    production = registry.stage(settings.models.student_rewriter, "production")
    assert production.version == version and production.metadata["role"] == "baseline-rewriter"
    served = load_model_dir(registry.download(production.name, version, tmp_path / "served"), "rewriter")
    assert served.rewrite(["blk"])  # the registered copy loads as a servable rewriter
    write_window(store, version)
    with pytest.raises(RLInputError, match="non-neural baseline rewriter"):
        run_retraining(settings, store, tmp_path / "data", tmp_path / "no-index", None, tmp_path / "runs")
