"""Label-free rewriter training: verified pairs only, a validation split made by query, clear errors for
data that cannot train a rewriter, and a real two-round run on a tiny model whose parameters change."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from minielm.data.esci import CANONICAL_QUERY, NOISE, EsciData
from minielm.data.synthetic import generate_dataset
from minielm.search import SearchIndex
from minielm.teachers.config import TinyBackboneConfig, tiny_rewriter_config
from minielm.teachers.label_free import (
    LM_SOURCE,
    LabelFreeConfig,
    LabelFreeError,
    VocabularyProposer,
    feedback_candidates,
    keeps_catalog_words,
    load_label_free_data,
    mine_rewrite_pairs,
    train_label_free_rewriter,
    with_validation_split,
)
from minielm.training.config import TrainingConfig

SMALL = TinyBackboneConfig(
    hidden_size=48, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=96, vocab_size=400
)


@pytest.fixture(scope="module")
def dataset() -> EsciData:
    return generate_dataset(n_products=300, n_queries=200, seed=5)


@pytest.fixture(scope="module")
def unlabelled(dataset) -> EsciData:
    return load_label_free_data(dataset, LabelFreeConfig())


def test_labels_are_dropped_and_a_validation_split_is_made(dataset, unlabelled):
    assert CANONICAL_QUERY not in unlabelled.examples.columns and NOISE not in unlabelled.examples.columns
    no_validation = dataset.examples[dataset.examples["split"] != "validation"]
    examples = with_validation_split(no_validation, fraction=0.2)
    per_query = examples.groupby("query_id")["split"].nunique()
    assert (per_query == 1).all(), "a query's rows move together"
    assert (examples["split"] == "validation").any() and (examples["split"] == "train").any()
    made = with_validation_split(no_validation.drop(columns="split"))
    assert set(made["split"]) == {"train", "validation", "test"}


def test_missing_column_names_the_column_and_the_step(dataset):
    with pytest.raises(LabelFreeError, match="label-free data: the examples lack column 'esci_label'"):
        with_validation_split(dataset.examples.drop(columns="esci_label"))


def test_kept_pairs_raise_relevant_products_and_keep_catalog_words(unlabelled):
    index = SearchIndex.build(unlabelled.products)
    kept = mine_rewrite_pairs(unlabelled, index, LabelFreeConfig(), show_progress=False)
    pairs = kept.pairs
    assert len(pairs) > 0 and (pairs["relevant_rewrite"] - pairs["relevant_raw"] >= 1).all()
    assert (pairs["query"] != pairs["rewrite"]).all()
    assert kept.stats["kept"] == len(pairs) <= kept.stats["queries"]


def test_vocabulary_proposals_fix_spelling_splits_and_abbreviations():
    proposer = VocabularyProposer(["black wireless headphones", "water bottle", "navy sofa"])
    assert "black wireless headphones" in proposer.propose("blk wireles headphones")
    assert "water bottle" in proposer.propose("waterbottle")
    assert proposer.propose("best water bottle")[:2] == ["best water bottle", "water bottle"]
    assert keeps_catalog_words("wireles headphones", "wireless headphones", {"wireless", "headphones"})
    assert not keeps_catalog_words("sofa without arms", "sofa", {"sofa", "arms"})
    assert not keeps_catalog_words("navy sofa", "sofa", {"navy", "sofa"})


def test_feedback_candidates_break_count_ties_in_title_order():
    """Title words that tie in count are tried in the order the titles hold them, whatever the hash seed:
    mining the same data twice keeps the same pairs."""
    titles = {"p1": "velvet purple ottoman footrest", "p2": "ottoman"}
    proposer = VocabularyProposer(list(titles.values()) + ["storage"])

    def search(texts, depth):
        return [["p1", "p2"] for _ in texts]

    (options,) = feedback_candidates(["lilac ottoman"], proposer, search, titles)
    assert options == ["velvet ottoman", "purple ottoman", "footrest ottoman"]


def test_no_improving_candidate_stops_with_a_clear_message(unlabelled):
    examples = unlabelled.examples.assign(esci_label="I")
    data = EsciData(examples=examples, products=unlabelled.products)
    with pytest.raises(LabelFreeError, match="no candidate rewrite retrieved at least 1 more relevant"):
        mine_rewrite_pairs(data, SearchIndex.build(data.products), LabelFreeConfig(), show_progress=False)


def test_relevance_model_judges_unjudged_products(unlabelled):
    class Generous:
        version = "test"

        def score(self, queries, texts):
            return [1.0] * len(queries)

    index = SearchIndex.build(unlabelled.products)
    only_judged = mine_rewrite_pairs(unlabelled, index, LabelFreeConfig(), show_progress=False)
    judged = mine_rewrite_pairs(unlabelled, index, LabelFreeConfig(), scorer=Generous(), show_progress=False)
    assert judged.pairs["relevant_rewrite"].mean() >= only_judged.pairs["relevant_rewrite"].mean()


@pytest.mark.slow
def test_two_rounds_train_the_teacher_further_with_its_own_candidates(dataset, tmp_path):
    training = TrainingConfig(
        max_steps=4, micro_batch_size=16, learning_rate=1e-2, warmup_steps=1, checkpoint_every=0, progress=False
    )
    config = tiny_rewriter_config(tiny=SMALL, training=training, max_eval_queries=8)
    run = train_label_free_rewriter(dataset, tmp_path, config, rounds=2, round_steps=[4, 3])
    first, second = run.metrics["label_free_rounds"]
    assert first["kept"]["kept"] > 0 and f"kept_{LM_SOURCE}" not in first["kept"]
    assert run.model_dir == tmp_path / "final" and second["model_dir"] == str(run.model_dir)
    before = AutoModelForCausalLM.from_pretrained(first["model_dir"]).state_dict()
    after = AutoModelForCausalLM.from_pretrained(second["model_dir"]).state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in after), "round 2 trains round 1's weights further"
    assert run.metrics["n_queries"] <= 8 and "min_confidence" in run.metrics
    again = train_label_free_rewriter(dataset, tmp_path, config, rounds=2, round_steps=[4, 3])
    assert again.metrics["label_free_rounds"] == run.metrics["label_free_rounds"], "finished rounds are not redone"


def test_label_free_is_chosen_when_the_data_has_no_canonical_rewrites(dataset, tmp_path):
    from minielm.data.esci import write_esci
    from minielm.teachers.rewriter import uses_label_free

    auto = tiny_rewriter_config()
    assert not uses_label_free(dataset, auto)
    stripped = EsciData(examples=dataset.examples.drop(columns=[CANONICAL_QUERY]), products=dataset.products)
    assert uses_label_free(stripped, auto)
    assert uses_label_free(write_esci(stripped, tmp_path / "real"), auto)
    assert not uses_label_free(write_esci(dataset, tmp_path / "synthetic"), auto)
    assert uses_label_free(dataset, tiny_rewriter_config(label_free="on"))
    assert not uses_label_free(stripped, tiny_rewriter_config(label_free="off"))


def test_cli_rejects_an_unknown_label_free_mode(tmp_path):
    from typer.testing import CliRunner

    from minielm.cli import app

    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(
        app, ["train", "teacher-rewriter", "--data", str(tmp_path / "data"), "--label-free", "maybe"]
    )
    assert result.exit_code == 2 and "--label-free: expected auto, on or off" in result.output
