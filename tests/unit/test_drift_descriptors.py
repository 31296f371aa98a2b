"""Our own text descriptors (no nltk), rewrite behaviour, outcome columns, the novelty score, and
settings that name the bad field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from minielm.config import ConfigError, load_settings
from minielm.drift.descriptors import (
    build_vocabulary,
    catalog_vocabulary,
    outcome_columns,
    rewrite_behaviour,
    text_descriptors,
    tokens,
)
from minielm.drift.metrics import novelty_score


def test_tokens_fold_case_and_split_on_punctuation():
    assert tokens("Stainless-Steel 12oz  BOTTLE, café") == ["stainless", "steel", "12oz", "bottle", "café"]


def test_text_descriptors_per_query():
    words = build_vocabulary(["stainless steel water bottle", "frying pan"])
    frame = text_descriptors(
        pd.Series(["water bottle 32 oz", "poêle 28 cm", "", None, "water bottle 32 oz"]), words, "query"
    )
    first = frame.iloc[0]
    assert first["query_length"] == 18 and first["query_tokens"] == 4
    assert first["query_digit_unit_share"] == 0.5  # "32" and the unit "oz" after it
    assert first["query_oov_share"] == 0.5  # "32", "oz" are not catalog words
    assert first["query_non_ascii_share"] == 0.0
    second = frame.iloc[1]
    assert second["query_non_ascii_share"] == pytest.approx(1 / 11)
    assert second["query_oov_share"] == 1.0
    assert frame.iloc[2].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]
    assert frame.iloc[3].tolist() == frame.iloc[2].tolist()
    assert frame.iloc[4].tolist() == first.tolist()
    assert len(frame) == 5


def test_a_unit_word_counts_only_after_a_number():
    frame = text_descriptors(pd.Series(["in stock x", "6 in x"]), frozenset(), "q")
    assert frame["q_digit_unit_share"].tolist() == [0.0, pytest.approx(2 / 3)]


def test_rewrite_behaviour_folds_case_and_spaces():
    frame = rewrite_behaviour(
        pd.Series(["Red  Shirt", "bleu shirt", "mug"]), pd.Series(["red shirt", "blue shirt", "coffee mug"])
    )
    assert frame["rewrite_identical"].tolist() == [1.0, 0.0, 0.0]
    assert frame["rewrite_edit_distance"].tolist() == [0.0, 2.0, 7.0]


def test_outcome_columns():
    window = pd.DataFrame(
        {"clicks": [0, 2, 1], "reformulated": [True, False, None], "n_results": [0, 5, 3], "reward": [-2.0, 4.0, 1.0]}
    )
    frame = outcome_columns(window)
    assert frame["clicked"].tolist() == [0.0, 1.0, 1.0]
    assert frame["reformulated"].tolist() == [1.0, 0.0, 0.0]
    assert frame["zero_results"].tolist() == [1.0, 0.0, 0.0]
    assert list(outcome_columns(pd.DataFrame({"query": ["a"]})).columns) == []


def test_catalog_vocabulary_reads_an_esci_products_table(tmp_path):
    pd.DataFrame(
        {"product_id": ["B1"], "product_title": ["Lodge Cast Iron Skillet 10 inch"], "product_brand": ["Lodge"]}
    ).to_parquet(tmp_path / "shopping_queries_dataset_products.parquet")
    assert {"lodge", "cast", "iron", "skillet", "10", "inch"} <= catalog_vocabulary(tmp_path)
    with pytest.raises(FileNotFoundError, match="drift.catalog_path"):
        catalog_vocabulary(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*products\\*.parquet"):
        catalog_vocabulary(tmp_path / "empty")


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_novelty_is_zero_for_the_same_distribution_and_counts_new_regions():
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(5, 32)))

    def around(centre_ids, n):
        picked = centres[rng.choice(centre_ids, n)]
        return _unit(picked + 0.05 * rng.normal(size=picked.shape))

    reference = around([0, 1, 2, 3], 400)
    assert novelty_score(around([0, 1, 2, 3], 400), reference, 0.8) <= 0.02
    shifted = np.vstack([around([0, 1, 2, 3], 280), around([4], 120)])  # 30% in a region never seen
    assert novelty_score(shifted, reference, 0.8) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize(
    "override, field",
    [
        ("drift.embedding_method=tsne", "drift.embedding_method"),
        ("drift.distribution_method=ks", "drift.distribution_method"),
        ("drift.webhook_url=ftp://alerts", "drift.webhook_url"),
        ("drift.checks=[]", "drift.checks"),
        ("drift.ctr_tolerance=0", "drift.ctr_tolerance"),
        ("drift.reports_prefix=/drift/", "drift.reports_prefix"),
        ("drift.embedding_similarity_floor=1.5", "drift.embedding_similarity_floor"),
    ],
)
def test_bad_drift_settings_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(overrides=[override], environ={}, use_services_state=False)


def test_demo_halves_split_each_partition_by_offset():
    from minielm.drift.sources import oldest_and_newest, split_halves

    def key(partition, first):
        return f"feedback/windows/topic=minielm.rewrites/partition={partition}/offsets={first}-{first + 9}.parquet"

    keys = [key(1, 10), key(0, 0), key(0, 20), key(1, 0), key(0, 10)]
    older, newer = split_halves(keys)
    assert older == [key(0, 0), key(0, 10), key(1, 0)] and newer == [key(0, 20), key(1, 10)]
    assert split_halves([key(0, 0), key(1, 0)]) == ([key(0, 0)], [key(1, 0)])
    assert oldest_and_newest(keys, 1, 1) == ([key(0, 0), key(1, 0)], [key(0, 20), key(1, 10)])
