"""The synthetic catalog: determinism, the ESCI layout, labels that follow attributes, learnable noise."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from minielm.data import esci
from minielm.data.esci import load_esci, write_esci
from minielm.data.noise import Slot, apply_noise, misspell
from minielm.data.synthetic import generate_dataset
from minielm.data.vocabulary import NOISE_KINDS, TYPES_BY_NAME, NoiseRates


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(n_products=1500, n_queries=400, seed=7)


def test_same_seed_same_data_other_seed_other_data(dataset):
    again = generate_dataset(n_products=1500, n_queries=400, seed=7)
    pd.testing.assert_frame_equal(again.examples, dataset.examples)
    pd.testing.assert_frame_equal(again.products, dataset.products)
    other = generate_dataset(n_products=1500, n_queries=400, seed=8)
    assert other.examples["query"].tolist() != dataset.examples["query"].tolist()


def test_layout_validates_and_round_trips(dataset, tmp_path):
    esci.validate_examples(dataset.examples)
    esci.validate_products(dataset.products)
    loaded = load_esci(write_esci(dataset, tmp_path))
    pd.testing.assert_frame_equal(loaded.examples, dataset.examples)
    pd.testing.assert_frame_equal(loaded.products, dataset.products)
    assert {"canonical_query", "noise"} <= set(loaded.examples.columns)
    assert {"product_type", "category", "material", "size", "price"} <= set(loaded.products.columns)


def test_every_query_has_an_exact_match_and_unique_judgments(dataset):
    ex = dataset.examples
    assert ex.groupby("query_id")["esci_label"].apply(lambda s: (s == "E").any()).all()
    assert not ex.duplicated(["query_id", "product_id"]).any()
    assert set(ex["esci_label"]) == set(esci.ESCI_LABELS)


def test_labels_follow_attributes(dataset):
    ex = dataset.examples.merge(dataset.products, on="product_id")
    for canonical, group in ex.groupby("canonical_query"):
        exact = group[group["esci_label"] == "E"]
        # Each Exact product's type and named attributes appear verbatim in the canonical query.
        for _, row in exact.iterrows():
            assert f" {row['product_type']} " in f" {canonical} "
            named = f" {canonical} ".replace(f" {row['product_type']} ", " ").split()
            attributes = f"{row['product_brand']} {row['product_color']} {row['material']} {row['size']}".split()
            assert set(named) <= set(attributes), (canonical, attributes)
        type_name = exact["product_type"].iloc[0]
        assert (exact["product_type"] == type_name).all()
        complements = group[group["esci_label"] == "C"]["product_type"]
        assert set(complements) <= set(TYPES_BY_NAME[type_name].complements)
        irrelevant = group[group["esci_label"] == "I"]["product_type"]
        assert type_name not in set(irrelevant)


def test_splits_are_by_canonical_query(dataset):
    queries = dataset.queries()
    assert set(queries["split"]) == {"train", "validation", "test"}
    assert (queries.groupby("canonical_query")["split"].nunique() == 1).all()
    assert 0.65 < (queries["split"] == "train").mean() < 0.95


def test_noise_is_recorded_and_clean_queries_equal_canonical(dataset):
    queries = dataset.queries()
    kinds = {k for value in queries["noise"] for k in value.split(",") if k}
    assert kinds == set(NOISE_KINDS)
    clean = queries[queries["noise"] == ""]
    assert (clean["query"] == clean["canonical_query"]).all()
    noisy = queries[queries["noise"] != ""]
    assert (noisy["query"] != noisy["canonical_query"]).all()
    assert 0.6 < len(noisy) / len(queries) < 0.95


def test_misspellings_are_a_fixed_function_of_the_word():
    assert misspell("cooker", 0) == misspell("cooker", 0)
    assert {misspell("pressure", 0), misspell("pressure", 1)} == {misspell("pressure", v) for v in (0, 1, 0, 1)}
    for word in ("cooker", "kettle", "stainless", "bedside", "black"):
        for variant in (0, 1):
            assert misspell(word, variant) != word


def test_noise_uses_the_fixed_lexicon():
    slots = [
        Slot("colour", "black"),
        Slot("type", "pressure cooker"),
        Slot("size", "6 quart", number="6", unit="quart"),
    ]
    seen = set()
    for seed in range(300):
        text, kinds = apply_noise(slots, random.Random(seed), NoiseRates(clean_fraction=0.0, max_kinds=1))
        if kinds == ["synonym"]:
            seen.add(text)
    assert seen == {"black instapot 6 quart", "black instant pot 6 quart"}


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="n_products"):
        generate_dataset(n_products=0)
    with pytest.raises(ValueError, match="n_queries"):
        generate_dataset(n_queries=0)
