"""The exploration bucket: a configured share of served requests gets a guarded non-greedy rewrite, the served
rewrite event marks it, and RL puts every rewrite a query was served into that query's group."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pandas as pd
import pytest

from minielm.config import load_settings
from minielm.feedback.events import ServedRewrite, parse_event
from minielm.feedback.schemas import served_rewrite_schema
from minielm.models.rewrite_guard import RewriteGuard
from minielm.rl.exploration import Exploration, ExplorationBucket
from minielm.search import SearchIndex
from serving.loading import LoadedModel
from serving.models import RewriterModel, RewriteSearchModel
from serving.validation import Parsed

BEAMS = {
    # greedy first; then a safe fix, a rewrite that drops "wireless", one that adds a number
    "wireles hedphones": ["wireless headphones", "headphones", "wireless headphones 2", "wireless headphone"],
    "blu shoos": ["blue shoes", "blue shoes"],
}


class BeamRewriter:
    """A rewriter with fixed beams, best first (the serving protocol: ``rewrite(queries, num_return)``)."""

    version = "beams"
    guard = None

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def rewrite(self, queries, num_return=1, do_sample=False):
        self.calls.append((list(queries), num_return))
        return [BEAMS.get(q, [q])[:num_return] for q in queries]  # other queries (the warm-up): kept as typed


def ids_in(bucket: ExplorationBucket, chosen: bool, n: int = 2) -> list[str]:
    found = [f"req-{i}" for i in range(1000) if bucket.chosen(f"req-{i}") == chosen]
    return found[:n]


def test_the_bucket_takes_the_configured_share_of_request_ids_reproducibly():
    bucket = ExplorationBucket(0.1, 4)
    ids = [f"r{i}" for i in range(20_000)]
    share = np.mean([bucket.chosen(i) for i in ids])
    assert 0.09 < share < 0.11
    assert [bucket.chosen(i) for i in ids[:200]] == [ExplorationBucket(0.1, 4).chosen(i) for i in ids[:200]]
    assert not any(ExplorationBucket(0.0, 4).chosen(i) for i in ids)
    with pytest.raises(ValueError, match="share"):
        ExplorationBucket(1.5, 4)


def test_an_exploring_request_gets_the_best_ranked_alternative_the_guard_allows():
    bucket, model = ExplorationBucket(1.0, 4), BeamRewriter()
    queries = ["wireles hedphones", "blu shoos"]
    explored = bucket.explore(model, ["a", "b"], queries, ["wireless headphones", "blue shoes"])
    # rank 1 drops "wireless", rank 2 adds a number: the guard refuses both; rank 3 keeps the intent
    assert explored[0] == Exploration("wireless headphone", 3, "wireless headphones")
    assert explored[1] is None  # no alternative differs from the greedy rewrite: greedy is served, unmarked
    assert model.calls == [(queries, 4)]
    strict = BeamRewriter()  # the model's own guard wins: its catalog knows no "headphone" to correct into
    strict.guard = RewriteGuard(vocabulary=frozenset({"wireless", "headphones"}))
    assert bucket.explore(strict, ["a"], queries[:1], ["wireless headphones"]) == [None]


def test_no_generation_runs_when_no_request_explores():
    bucket, model = ExplorationBucket(0.3, 4), BeamRewriter()
    outside = ids_in(bucket, chosen=False)
    assert bucket.explore(model, outside, ["blu shoos"] * 2, ["blue shoes"] * 2) == [None, None]
    assert model.calls == []


class ListLog:
    def __init__(self) -> None:
        self.events: list[ServedRewrite] = []

    def submit(self, event: ServedRewrite) -> bool:
        self.events.append(event)
        return True


def test_rewrite_search_serves_and_logs_the_exploration_candidate(tmp_path):
    products = pd.DataFrame(
        {
            "product_id": ["B01", "B02"],
            "product_title": ["wireless headphone", "blue shoes"],
            "product_description": ["", ""],
            "product_bullet_point": ["", ""],
            "product_brand": ["Acme", "Stride"],
            "product_color": ["black", "blue"],
        }
    )
    settings = load_settings(
        overrides=["serving.exploration_share=0.5", "serving.enable_feast=false"], environ={}, use_services_state=False
    )
    log = ListLog()
    rewriter = RewriterModel("rewriter", settings, loader=lambda: LoadedModel("rewriter", "v1", "test", BeamRewriter()))
    search = RewriteSearchModel(
        "rewrite-search", settings, rewriter, index_loader=lambda: SearchIndex.build(products), rewrite_log=log
    )
    rewriter.load()
    search.load()
    inside, outside = ids_in(search.exploration, True, 1)[0], ids_in(search.exploration, False, 1)[0]
    explored = search.infer(Parsed([{"query": "wireles hedphones"}]), inside, True)[0]
    greedy = search.infer(Parsed([{"query": "wireles hedphones"}]), outside, True)[0]
    warm = search.infer(Parsed([{"query": "wireles hedphones"}]), inside, False)[0]  # not logged: never explores
    assert explored["rewrite"] == "wireless headphone" and greedy["rewrite"] == warm["rewrite"] == "wireless headphones"
    first, second = log.events
    assert (first.exploration, first.exploration_rank, first.greedy_rewrite) == (True, 3, "wireless headphones")
    assert first.rewrite == "wireless headphone" and first.product_ids[0] == "B01"
    assert (second.exploration, second.exploration_rank, second.greedy_rewrite) == (False, None, None)
    for event in (first, second):  # what the aggregator reads back, and what the published schema allows
        assert parse_event(event.to_bytes()) == event
        jsonschema.Draft202012Validator(served_rewrite_schema()).validate(json.loads(event.to_bytes()))


@pytest.fixture()
def rl_env(monkeypatch, tmp_path):
    from moto import mock_aws

    from minielm.data.esci import write_esci
    from minielm.data.synthetic import generate_dataset
    from minielm.registry import ModelRegistry
    from minielm.storage import ObjectStore
    from tests.unit.rl_fixtures import save_tiny_llama

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        settings = load_settings(
            overrides=["s3.endpoint_url=null", "rl.min_new_requests=1", "rl.labelled_queries_per_run=0"],
            environ={},
            use_services_state=False,
        )
        store = ObjectStore(settings.s3)
        store.ensure_bucket()
        registry = ModelRegistry(store)
        entry = registry.register(settings.models.student_rewriter, save_tiny_llama(tmp_path / "model"))
        data = generate_dataset(n_products=200, n_queries=40, seed=3)
        yield settings, store, entry.version, data, write_esci(data, tmp_path / "data")


def test_rl_groups_hold_every_rewrite_a_query_was_served_with_its_own_feedback(rl_env, tmp_path):
    from minielm.rl.feedback import WINDOW_COLUMNS, observed_rewards
    from minielm.rl.retraining import FEEDBACK_FILE, TRAIN_FILE, prepare_training_set

    settings, store, version, data, data_dir = rl_env
    train = sorted(set(data.examples.loc[data.examples["split"] == "train", "query"]))
    explored, plain = train[0], train[1]
    served = [(explored, "greedy fix", 1.0), (explored, "exploration fix", 6.0), (explored, "Greedy  Fix", 0.0)]
    served.append((plain, plain, 2.0))
    rows = [
        {
            **{c: 0 for c in ("n_results", "impressions", "clicks", "add_to_carts", "purchases")},
            "request_id": f"r{i}",
            "query": query,
            "query_key": "",
            "rewrite": rewrite,
            "model_name": settings.models.student_rewriter,
            "model_version": version,
            "ts": 1.0,
            "reformulated": False,
            "reward": reward,
        }
        for i, (query, rewrite, reward) in enumerate(served)
    ]
    key = "feedback/windows/topic=minielm.rewrites/partition=0/offsets=0-3.parquet"
    store.put_parquet(key, pd.DataFrame(rows, columns=list(WINDOW_COLUMNS)))

    summary = prepare_training_set(settings, store, data_dir, tmp_path / "prepared")

    assert summary["n_queries_with_served_alternatives"] == 1
    frame = pd.read_parquet(tmp_path / "prepared" / TRAIN_FILE).set_index("query")
    assert list(frame.loc[explored, "served_rewrites"]) == ["greedy fix", "exploration fix"]
    assert list(frame.loc[plain, "served_rewrites"]) == [plain]
    observed = observed_rewards(pd.read_parquet(tmp_path / "prepared" / FEEDBACK_FILE))
    rewards = {rewrite: value for (_, rewrite), value in observed.items() if rewrite.endswith("fix")}
    assert rewards == {"greedy fix": 0.5, "exploration fix": 6.0}  # the spread feedback gives this group
