"""The product type resolver: fires only on the one phrase the catalog cannot explain, keeps brands, numbers
and negations, respects its threshold, and round-trips through the baseline's save and load.

The tests that score phrases use the shipped all-MiniLM-L6-v2 encoder (a local wheel, no download); the
rule tests never reach it."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from minielm.baseline import PhraseTableRewriter
from minielm.config import ServingConfig
from minielm.data.synthetic import generate_dataset
from minielm.errors import InputError
from minielm.models.backbones import tiny_llama_config
from minielm.models.loading import load_model_dir
from minielm.models.product_type_resolver import RESOLVER_FILE, ProductTypeResolver
from minielm.models.rewriter import CausalRewriter
from minielm.models.tokenizer import train_bpe_tokenizer
from minielm.teachers.config import RewriterTeacherConfig
from minielm.teachers.rewriter import fit_front_end

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["1", "2", "3", "4"],
        "product_title": [
            "Wenster Olive Vacuum Cleaner 2 Pack",
            "Galara Black Hooded Sweatshirt Cotton",
            "Trekora Red Sleeping Bag Down",
            "Wenster Blue Coffee Maker 12 Cup",
        ],
        "product_brand": ["wenster", "galara", "trekora", "wenster"],
        "product_color": ["olive", "black", "red", "blue"],
        "material": ["plastic", "cotton", "down", "steel"],
        "feature": ["cordless", "", "water resistant", ""],
        "size": ["2 pack", "large", "", "12 cup"],
        "product_type": ["vacuum cleaner", "hooded sweatshirt", "sleeping bag", "coffee maker"],
    }
)


@pytest.fixture(scope="module")
def resolver() -> ProductTypeResolver:
    return ProductTypeResolver.fit(PRODUCTS, min_similarity=0.5)


@pytest.mark.slow  # loads all-MiniLM-L6-v2 (seconds idle, a minute on a loaded 2-core host)
def test_replaces_the_unexplained_phrase_with_a_catalog_type(resolver):
    assert resolver.resolve_one("wenster olive hoover") == "wenster olive vacuum cleaner"
    assert resolver.resolve_one("black hoodie") == "black hooded sweatshirt"


@pytest.mark.slow  # loads all-MiniLM-L6-v2 (seconds idle, a minute on a loaded 2-core host)
def test_keeps_brands_numbers_and_negations(resolver):
    assert resolver.resolve_one("galara hoodie 2 pack") == "galara hooded sweatshirt 2 pack"
    assert resolver.resolve_one("hoodie without cotton") == "hooded sweatshirt without cotton"


def test_does_not_fire_where_the_rules_forbid(resolver):
    assert resolver.best_type("olive vacuum cleaner") is None  # names a catalog type
    assert resolver.best_type("red down") is None  # nothing unexplained
    assert resolver.best_type("hoodie for my dad and his hoover") is None  # two runs: ambiguous
    assert resolver.best_type("very old style family hoodie") is None  # a run over three words
    assert resolver.best_type("coffee") is None  # a catalog phrase


@pytest.mark.slow  # loads all-MiniLM-L6-v2 (seconds idle, a minute on a loaded 2-core host)
def test_threshold_is_respected(resolver):
    found = resolver.best_type("olive hoover")
    assert found is not None
    cosine = found[3]
    strict = ProductTypeResolver.fit(PRODUCTS, min_similarity=min(1.0, cosine + 0.01))
    assert strict.resolve_one("olive hoover") == "olive hoover"
    loose = ProductTypeResolver.fit(PRODUCTS, min_similarity=cosine)
    assert loose.resolve_one("olive hoover") == "olive vacuum cleaner"
    picky = ProductTypeResolver.fit(PRODUCTS, min_similarity=0.05, min_margin=0.99)
    assert picky.resolve_one("olive hoover") == "olive hoover"


@pytest.mark.slow  # loads all-MiniLM-L6-v2 (seconds idle, a minute on a loaded 2-core host)
def test_saved_with_the_baseline_and_loaded_back(tmp_path, resolver):
    baseline = PhraseTableRewriter.fit(PRODUCTS, type_resolver=resolver)
    assert baseline(["wenster olive hoover"]) == ["wenster olive vacuum cleaner"]
    baseline.save(tmp_path)
    assert (tmp_path / RESOLVER_FILE).is_file()
    loaded = PhraseTableRewriter.load(tmp_path)
    assert loaded.type_resolver is not None
    assert loaded.type_resolver.min_similarity == resolver.min_similarity
    assert loaded.type_resolver.types == resolver.types
    assert loaded(["wenster olive hoover", "galara hoodie"]) == baseline(["wenster olive hoover", "galara hoodie"])
    plain = tmp_path / "plain"
    PhraseTableRewriter.fit(PRODUCTS).save(plain)
    assert PhraseTableRewriter.load(plain).type_resolver is None


@pytest.mark.parametrize(
    ("similarity", "margin", "field"),
    [(0.0, 0.0, "min_similarity"), (1.5, 0.0, "min_similarity"), (0.8, -0.1, "min_margin"), (0.8, 1.0, "min_margin")],
)
def test_bad_thresholds_name_the_field(similarity, margin, field):
    with pytest.raises(InputError, match=field):
        ProductTypeResolver.fit(PRODUCTS, min_similarity=similarity, min_margin=margin)


def test_bad_catalog_and_file_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="product_type"):
        ProductTypeResolver.fit(PRODUCTS.drop(columns=["product_type"]))
    with pytest.raises(InputError, match="no product type resolver"):
        ProductTypeResolver.load(tmp_path / RESOLVER_FILE)
    (tmp_path / RESOLVER_FILE).write_text('{"format": "other"}')
    with pytest.raises(InputError, match="format"):
        ProductTypeResolver.load(tmp_path / RESOLVER_FILE)


def test_a_cascade_saves_its_front_ends_resolver_for_serving(tmp_path, resolver):
    tokenizer = train_bpe_tokenizer(["wenster olive vacuum cleaner", "black hooded sweatshirt"] * 50, 300)
    config = tiny_llama_config(
        tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64
    )
    front_end = PhraseTableRewriter.fit(PRODUCTS, type_resolver=resolver)
    directory = tmp_path / "model"
    CausalRewriter(AutoModelForCausalLM.from_config(config), tokenizer, front_end=front_end).save(directory)
    served = load_model_dir(directory, "rewriter", ServingConfig(generation_backend="huggingface"))
    assert served.front_end.type_resolver is not None
    assert served.front_end.type_resolver.min_similarity == resolver.min_similarity
    assert served.front_end.type_resolver.types == resolver.types


def test_the_teacher_option_gives_the_front_end_a_resolver():
    dataset = generate_dataset(300, 60, seed=0)
    config = RewriterTeacherConfig(front_end="baseline", front_end_type_similarity=0.8)
    assert fit_front_end(dataset, config).type_resolver.min_similarity == 0.8
    assert fit_front_end(dataset, RewriterTeacherConfig(front_end="baseline")).type_resolver is None
    with pytest.raises(ValidationError, match="front_end_type_similarity"):
        RewriterTeacherConfig(front_end="baseline", front_end_type_similarity=1.5)
