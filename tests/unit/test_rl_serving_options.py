"""An RL candidate is registered with the production rewriter's intent guard and serving options (threshold,
token budget, class), so tuning the weights never makes what is served less safe (S3 mocked by moto)."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from minielm.config import load_settings
from minielm.models.rewrite_guard import RewriteGuard
from minielm.models.rewriter import GUARD_FILE, METADATA_FILE, MODEL_CLASS, CausalRewriter
from minielm.registry import ModelRegistry
from minielm.rl.policy import carry_serving_options
from minielm.rl.retraining import register_candidate
from minielm.storage import ObjectStore
from tests.unit.rl_fixtures import save_tiny_llama

PRODUCTION_OPTIONS = {"model_class": MODEL_CLASS, "min_confidence": 0.35, "max_new_tokens": 7}


@pytest.fixture()
def registry(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        settings = load_settings(overrides=["s3.endpoint_url=null"], environ={}, use_services_state=False)
        store = ObjectStore(settings.s3)
        store.ensure_bucket()
        yield settings, ModelRegistry(store)


def guarded_production(directory):
    save_tiny_llama(directory)
    RewriteGuard.from_texts(["red running shoe", "blue sun hat"], [("sneaker", "shoe")] * 2).save(
        directory / GUARD_FILE
    )
    (directory / METADATA_FILE).write_text(json.dumps(PRODUCTION_OPTIONS))
    return directory


def test_a_registered_candidate_serves_with_productions_guard_and_options(registry, tmp_path):
    settings, registry = registry
    name = settings.models.student_rewriter
    production = registry.register(name, guarded_production(tmp_path / "production"), PRODUCTION_OPTIONS)
    registry.promote(name, production.version, "production")
    trained = tmp_path / "trained"
    registry.download(name, production.version, trained / "production")
    save_tiny_llama(trained / "model", seed=1)  # tuned weights whose directory lost the guard and the options
    summary = {"production_version": production.version, "reference_version": production.version}
    evaluation = {"heldout": {"candidate": {}}, "replay": {}}

    entry = register_candidate(settings, registry, trained, summary, evaluation, {"windows": []}, "rl-test")

    assert {k: entry.metadata[k] for k in PRODUCTION_OPTIONS} == PRODUCTION_OPTIONS
    served = CausalRewriter.load(registry.download(name, entry.version, tmp_path / "served"))
    expected = RewriteGuard.load(tmp_path / "production" / GUARD_FILE)
    assert served.guard is not None and served.guard == expected
    assert served.min_confidence == 0.35 and served.max_new_tokens == 7
    assert not served.guard.allows("red running shoe", "red shoe")  # the guard serving applies drops nothing


def test_carrying_replaces_a_stale_guard_and_removes_one_production_lacks(tmp_path):
    production = guarded_production(tmp_path / "production")
    candidate = save_tiny_llama(tmp_path / "candidate", seed=1)
    RewriteGuard(frozenset({"other"})).save(candidate / GUARD_FILE)
    (candidate / METADATA_FILE).write_text(json.dumps({"min_confidence": 0.0, "role": "rl"}))

    assert carry_serving_options(production, candidate) == PRODUCTION_OPTIONS
    assert RewriteGuard.load(candidate / GUARD_FILE) == RewriteGuard.load(production / GUARD_FILE)
    assert json.loads((candidate / METADATA_FILE).read_text()) == {**PRODUCTION_OPTIONS, "role": "rl"}

    (production / GUARD_FILE).unlink()
    carry_serving_options(production, candidate)
    assert not (candidate / GUARD_FILE).exists()


@pytest.mark.slow
def test_rollout_registers_the_guarded_candidate_and_the_shopper_scores_its_canary(registry, tmp_path):
    """A passed gate (given here) leads to registration and a replay canary. Both tiny models are random, so
    production's guard turns every rewrite of either back into the typed query: the shopper sees identical
    pages, the verdict is "no change" and production stays."""
    from minielm.data.esci import write_esci
    from minielm.data.synthetic import generate_dataset
    from minielm.rl.retraining import rollout_candidate
    from minielm.search import SearchIndex

    settings, registry = registry
    settings = settings.model_copy(
        update={"rl": settings.rl.model_copy(update={"max_new_tokens": 6, "canary_min_requests": 5})}
    )
    name = settings.models.student_rewriter
    data = generate_dataset(n_products=200, n_queries=60, seed=3)
    data_dir = write_esci(data, tmp_path / "data")
    SearchIndex.build(data.products).save(tmp_path / "index")
    production = registry.register(name, guarded_production(tmp_path / "production"), PRODUCTION_OPTIONS)
    registry.promote(name, production.version, "production")
    trained = tmp_path / "trained"
    registry.download(name, production.version, trained / "production")
    save_tiny_llama(trained / "model", seed=1)
    summary = {"production_version": production.version, "reference_version": production.version}
    (trained / "train.json").write_text(json.dumps(summary))
    evaluation = {"heldout": {"candidate": {}}, "replay": {}, "gate": {"passed": True, "reasons": []}}

    outcome = rollout_candidate(
        settings, registry.store, data_dir, tmp_path / "index", trained, evaluation, {"windows": []}, "rl-t", tmp_path
    )

    assert outcome["status"] == "no_change", outcome
    assert outcome["canary"]["judge"] == "shopper:attributes" and outcome["canary"]["n_requests"] >= 5
    assert outcome["production_after"] == production.version
    candidate = registry.get(name, outcome["candidate_version"]).metadata
    assert candidate["min_confidence"] == 0.35 and candidate["parent_version"] == production.version
