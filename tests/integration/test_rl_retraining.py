"""The RL retraining stage end to end on the real embedded S3: windows -> GRPO on a tiny model ->
held-out evaluation -> gate -> register -> canary -> promote or roll back, plus its bad inputs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from minielm.config import load_settings
from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.registry import ModelRegistry
from minielm.rl.errors import RLInputError
from minielm.rl.feedback import WINDOW_COLUMNS, read_watermark
from minielm.rl.retraining import NOTHING_TO_DO, prepare_training_set, run_retraining
from minielm.search import SearchIndex
from minielm.storage import ObjectStore
from tests.unit.rl_fixtures import char_tokenizer, save_tiny_llama

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-corpus")
    data = generate_dataset(n_products=300, n_queries=60, seed=3)
    data_dir = write_esci(data, root / "data")
    SearchIndex.build(data.products).save(root / "index")
    return data, data_dir, root / "index"


@pytest.fixture()
def rl_env(embedded_services, tmp_path):
    """Settings with a fresh bucket, a tiny production rewriter registered, and a helper to write windows."""
    bucket = f"rl-{uuid.uuid4().hex[:10]}"
    overrides = [
        f"s3.bucket={bucket}",
        "rl.max_steps=2",
        "rl.num_generations=8",
        "rl.queries_per_step=2",
        "rl.max_new_tokens=8",
        "rl.intent_embedder=ngram_overlap",
        "rl.reward_weights.judge=0",
        "rl.min_new_requests=5",
        "rl.labelled_queries_per_run=4",
        "rl.canary_min_requests=4",
        "eval.top_k=5",
    ]
    settings = embedded_services.model_copy(update={"s3": embedded_services.s3.model_copy(update={"bucket": bucket})})
    settings = load_settings(overrides=overrides, environ={}, use_services_state=False).model_copy(
        update={"s3": settings.s3, "kafka": settings.kafka}
    )
    store = ObjectStore(settings.s3)
    store.ensure_bucket()
    registry = ModelRegistry(store)
    tokenizer = char_tokenizer(extra="QRW.,'\"")
    base = registry.register(settings.models.student_rewriter, save_tiny_llama(tmp_path / "base", tokenizer))
    registry.promote(base.name, base.version, "production")
    return settings, store, registry, base


def write_window(store, queries, version, first=0, model_name="student-rewriter"):
    rows = [
        {
            "request_id": f"r{first + i}",
            "query": q,
            "query_key": "",
            "rewrite": q,
            "model_name": model_name,
            "model_version": version,
            "ts": 1.0,
            "n_results": 3,
            "impressions": 3,
            "clicks": i % 2,
            "add_to_carts": 0,
            "purchases": 0,
            "reformulated": False,
            "reward": float(i % 2),
        }
        for i, q in enumerate(queries)
    ]
    frame = pd.DataFrame(rows, columns=list(WINDOW_COLUMNS))
    key = f"feedback/windows/topic=minielm.rewrites/partition=0/offsets={first}-{first + max(len(rows), 1) - 1}.parquet"
    store.put_parquet(key, frame)
    return key


def test_too_little_feedback_is_nothing_to_do(rl_env, corpus, tmp_path):
    settings, store, registry, base = rl_env
    _, data_dir, index_dir = corpus
    write_window(store, ["red shoe", "blue hat"], base.version)
    result = run_retraining(settings, store, data_dir, index_dir, None, tmp_path)
    assert result["status"] == NOTHING_TO_DO
    assert "rl.min_new_requests=5" in result["prepare"]["reason"]
    assert read_watermark(store, settings.rl.watermark_key) == {}


def test_unknown_model_version_and_empty_window_fail_clearly(rl_env, corpus, tmp_path):
    settings, store, registry, base = rl_env
    _, data_dir, _ = corpus
    key = write_window(store, ["red shoe"] * 6, "v-never-registered")
    with pytest.raises(RLInputError, match="v-never-registered"):
        prepare_training_set(settings, store, data_dir, tmp_path / "a")
    store.delete(key)
    write_window(store, [], base.version, first=10)
    with pytest.raises(RLInputError, match="is empty"):
        prepare_training_set(settings, store, data_dir, tmp_path / "b")
    assert registry.stage(settings.models.student_rewriter, "production").version == base.version


@pytest.mark.slow
def test_gate_blocks_a_degraded_candidate_and_production_stays(rl_env, corpus, tmp_path):
    settings, store, registry, base = rl_env
    data, data_dir, index_dir = corpus
    queries = data.examples.drop_duplicates("query_id")["query"].tolist()
    write_window(store, queries[:12], base.version)
    result = run_retraining(settings, store, data_dir, index_dir, None, tmp_path)
    assert result["status"] == "gated"  # a random tiny model's rewrites retrieve less than the raw query
    assert not result["evaluation"]["gate"]["passed"]
    assert any("does not beat raw" in r for r in result["evaluation"]["gate"]["reasons"])
    name = settings.models.student_rewriter
    assert registry.stage(name, "production").version == base.version
    assert registry.versions(name) == [base.version]
    assert read_watermark(store, settings.rl.watermark_key) == {"minielm.rewrites/0": 11}


@pytest.mark.slow
def test_pipeline_locally_follows_the_quality_gates_verdict(rl_env, corpus, tmp_path):
    """kfp.local runs the compiled steps as subprocesses against the real S3, with s3:// inputs. Plumbing with a
    weak model: the gate stays as configured (it must beat raw and the baseline within the harm target), so a
    random tiny policy is gated; the test asserts the pipeline follows that verdict: nothing registered,
    production kept, the watermark advanced, no secrets file left behind."""
    from minielm.s3_uris import upload_dir
    from pipelines.rl_retraining import run_local

    settings, store, registry, base = rl_env
    data, data_dir, index_dir = corpus
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(update={"runs_dir": tmp_path / "runs"})})
    queries = data.examples.drop_duplicates("query_id")["query"].tolist()
    write_window(store, queries[:12], base.version)
    data_uri, index_uri = f"s3://{settings.s3.bucket}/rl-test/data", f"s3://{settings.s3.bucket}/rl-test/index"
    upload_dir(data_dir, data_uri, settings.s3)
    upload_dir(index_dir, index_uri, settings.s3)
    result = run_local(settings, data_uri=data_uri, index_uri=index_uri, run_id="rl-test")
    name = settings.models.student_rewriter
    assert result["status"] == "gated", result
    assert result["reasons"] and any("baseline" in r or "raw" in r for r in result["reasons"]), result
    assert registry.stage(name, "production").version == base.version
    assert registry.versions(name) == [base.version]
    assert not list((tmp_path / "runs").rglob("settings.json")), "the secrets file outlived the run"
    assert read_watermark(store, settings.rl.watermark_key) == {"minielm.rewrites/0": 11}


@pytest.mark.slow
def test_demo_step_skips_without_production_then_runs_rl_and_prints_the_table(embedded_services, corpus, tmp_path):
    from minielm.demo import DemoContext
    from minielm.demo.artifacts import DemoArtifacts
    from minielm.demo.rl_step import rl_demo_step

    data, data_dir, index_dir = corpus
    bucket = f"rl-demo-{uuid.uuid4().hex[:8]}"
    settings = embedded_services.model_copy(
        update={
            "s3": embedded_services.s3.model_copy(update={"bucket": bucket}),
            "rl": embedded_services.rl.model_copy(
                update={
                    "intent_embedder": "ngram_overlap",
                    "max_new_tokens": 8,
                    "canary_min_requests": 4,
                    "reward_weights": embedded_services.rl.reward_weights.model_copy(update={"judge": 0.0}),
                }
            ),
        }
    )
    store = ObjectStore(settings.s3)
    store.ensure_bucket()
    student = save_tiny_llama(tmp_path / "student", char_tokenizer(extra="QRW.,'\""))
    lines: list[str] = []
    ctx = DemoContext(
        settings=settings,
        workdir=tmp_path,
        store=store,
        echo=lines.append,
        artifacts=DemoArtifacts(dataset_dir=Path(data_dir), index_dir=Path(index_dir), student_rewriter_dir=student),
    )
    registry = ModelRegistry(store)
    ctx.artifacts.feedback_window_keys = []
    ctx.artifacts.distill_gate = {"rewriter": {"passed": False, "reasons": ["student does not beat the baseline"]}}
    rl_demo_step(ctx)  # no production rewriter: a failed student is never promoted, RL is skipped
    assert ctx.artifacts.rl_report["status"] == "skipped"
    assert registry.stage(settings.models.student_rewriter, "production") is None
    assert any("RL skipped" in line and "does not beat the baseline" in line for line in lines)
    # Plumbing from here: the random tiny student is put in production by hand so RL has a policy to tune;
    # the gate's verdict on it is what the test asserts.
    entry = registry.register(settings.models.student_rewriter, student)
    registry.promote(entry.name, entry.version, "production")
    rl_demo_step(ctx)  # no windows yet: nothing to do
    assert ctx.artifacts.rl_report["status"] == NOTHING_TO_DO
    version = entry.version
    queries = data.examples.drop_duplicates("query_id")["query"].tolist()
    ctx.artifacts.feedback_window_keys = [write_window(store, queries[:12], version)]
    rl_demo_step(ctx)
    report = ctx.artifacts.rl_report
    assert report["status"] == "gated"  # the random tiny student cannot beat the raw query
    assert report["production_after"] == report["production_before"] == version
    text = "\n".join(lines)
    for label in ("raw", "distilled", "RL-tuned", "quality gate FAILED", "(unchanged)"):
        assert label in text
