"""The synthetic catalog: determinism, the ESCI layout, labels that follow attributes, learnable noise."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from minielm.data import esci
from minielm.data.alignment import aligned_edits
from minielm.data.esci import load_esci, write_esci
from minielm.data.noise import Slot, apply_noise, phonetic_variant, typo
from minielm.data.synthetic import generate_dataset
from minielm.data.vocabulary import (
    ALL_BRANDS,
    FILLERS,
    NOISE_KINDS,
    OUT_OF_CATALOG_CLASS,
    PRODUCT_TYPES,
    TYPES_BY_NAME,
    NoiseRates,
    reserved_split,
)


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(n_products=1500, n_queries=1200, seed=7)


def test_same_seed_same_data_other_seed_other_data(dataset):
    again = generate_dataset(n_products=1500, n_queries=1200, seed=7)
    pd.testing.assert_frame_equal(again.examples, dataset.examples)
    pd.testing.assert_frame_equal(again.products, dataset.products)
    other = generate_dataset(n_products=1500, n_queries=1200, seed=8)
    assert other.examples["query"].tolist() != dataset.examples["query"].tolist()


def test_layout_validates_and_round_trips(dataset, tmp_path):
    esci.validate_examples(dataset.examples)
    esci.validate_products(dataset.products)
    loaded = load_esci(write_esci(dataset, tmp_path))
    pd.testing.assert_frame_equal(loaded.examples, dataset.examples)
    pd.testing.assert_frame_equal(loaded.products, dataset.products)
    assert {"canonical_query", "noise", "noise_novelty"} <= set(loaded.examples.columns)
    assert {"product_type", "category", "material", "size", "feature", "model", "price"} <= set(loaded.products.columns)


def test_every_catalog_query_has_an_exact_match_and_out_of_catalog_none(dataset):
    ex = dataset.examples
    in_catalog = ex["noise"] != OUT_OF_CATALOG_CLASS
    assert ex[in_catalog].groupby("query_id")["esci_label"].apply(lambda s: (s == "E").any()).all()
    outside = ex[~in_catalog]
    assert outside["query_id"].nunique() > 20
    assert (outside["esci_label"] == "I").all()
    assert (outside["query"] == outside["canonical_query"]).all()
    assert not ex.duplicated(["query_id", "product_id"]).any()
    assert set(ex["esci_label"]) == set(esci.ESCI_LABELS)


def test_labels_follow_attributes(dataset):
    ex = dataset.examples.merge(dataset.products, on="product_id")
    ex = ex[ex["noise"] != OUT_OF_CATALOG_CLASS]
    for canonical, group in ex.groupby("canonical_query"):
        exact = group[group["esci_label"] == "E"]
        # Each Exact product's type and named attributes appear verbatim in the canonical query.
        for _, row in exact.iterrows():
            assert f" {row['product_type']} " in f" {canonical} "
            named = f" {canonical} ".replace(f" {row['product_type']} ", " ").split()
            attributes = (
                f"{row['product_brand']} {row['product_color']} {row['material']} {row['size']} "
                f"{row['feature']} {row['model']}"
            ).split()
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
    assert kinds == set(NOISE_KINDS) | {OUT_OF_CATALOG_CLASS}
    unchanged = queries[queries["noise"].isin(["", OUT_OF_CATALOG_CLASS])]
    assert (unchanged["query"] == unchanged["canonical_query"]).all()
    assert (unchanged["noise_novelty"] == "none").all()
    noisy = queries[~queries["noise"].isin(["", OUT_OF_CATALOG_CLASS])]
    assert (noisy["query"] != noisy["canonical_query"]).all()
    assert 0.6 < len(noisy) / len(queries) < 0.95


def test_the_vocabulary_is_large():
    words = {w for t in PRODUCT_TYPES for form in (t.name, *t.synonyms) for w in form.split()} | ALL_BRANDS
    assert len(PRODUCT_TYPES) > 150
    assert len(words) > 1000


def test_misspellings_are_drawn_per_occurrence_and_change_the_word():
    rng = random.Random(0)
    forms = {typo("headphones", rng) for _ in range(200)}
    assert len(forms) > 30  # a generative process, not a fixed table
    assert "headphones" not in forms
    assert typo("kettle", random.Random(1), "double") != "kettle"
    assert {phonetic_variant("headphones", random.Random(s)) for s in range(20)} >= {"headfones"}


def test_test_split_holds_noise_never_seen_in_training(dataset):
    queries = dataset.queries()
    train = queries[queries["split"] == "train"]
    test = queries[queries["split"] == "test"]
    assert set(test["noise_novelty"]) == {"none", "seen", "unseen"}
    assert set(train["noise_novelty"]) <= {"none", "seen"}
    train_edits = {e for q, c in zip(train["query"], train["canonical_query"]) for e in aligned_edits(q, c)}
    unseen = test[test["noise_novelty"] == "unseen"]
    # Most unseen queries hold an edit no train query shows, even as the baseline's aligner sees them.
    novel = [
        any(e not in train_edits for e in aligned_edits(q, c))
        for q, c in zip(unseen["query"], unseen["canonical_query"])
    ]
    assert sum(novel) / len(novel) > 0.8


def test_reserved_lexicon_forms_appear_only_in_their_split(dataset):
    queries = dataset.queries()
    queries = queries[queries["noise"] == "synonym"]
    used = {split: set() for split in ("train", "validation", "test")}
    for query, canonical, split in zip(queries["query"], queries["canonical_query"], queries["split"]):
        for product_type in PRODUCT_TYPES:
            if f" {product_type.name} " in f" {canonical} ":
                used[split] |= {s for s in product_type.synonyms if canonical.replace(product_type.name, s) == query}
    assert any(reserved_split(form) == "test" for form in used["test"])
    assert any(reserved_split(form) == "validation" for form in used["validation"])
    assert not any(reserved_split(form) for form in used["train"])
    assert not any(reserved_split(form) == "test" for form in used["validation"])
    assert not any(reserved_split(form) == "validation" for form in used["test"])


def test_over_specification_only_adds_filler():
    slots = [Slot("brand", "cookwell"), Slot("type", "water bottle"), Slot("feature", "bpa free")]
    rates = NoiseRates(clean_fraction=0.0, max_kinds=1, weights={"over_specification": 1.0})
    for seed in range(50):
        text, kinds = apply_noise(slots, random.Random(seed), rates)
        assert kinds == ["over_specification"]
        added = f" {text} "
        for word in "cookwell water bottle bpa free".split():
            added = added.replace(f" {word} ", " ", 1)
        assert set(added.split()) <= {w for f in FILLERS for w in f.split()}


def test_synonyms_respect_the_held_out_forms():
    slots = [
        Slot("colour", "black"),
        Slot("type", "pressure cooker"),
        Slot("size", "6 quart", number="6", unit="quart"),
    ]
    rates = NoiseRates(clean_fraction=0.0, max_kinds=1, weights={"synonym": 1.0})
    forms = {split: set() for split in ("train", "validation", "test")}
    for seed in range(200):
        for split, drawn in forms.items():
            drawn.add(apply_noise(slots, random.Random(seed), rates, data_split=split)[0])
    synonyms = TYPES_BY_NAME["pressure cooker"].synonyms
    for split, drawn in forms.items():
        assert drawn == {f"black {s} 6 quart" for s in synonyms if reserved_split(s) in (None, split)}
    assert forms["test"] != forms["validation"]


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="n_products"):
        generate_dataset(n_products=0)
    with pytest.raises(ValueError, match="n_queries"):
        generate_dataset(n_queries=0)
