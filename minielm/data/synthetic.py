"""A synthetic shopping catalog with noisy queries, canonical rewrites and ESCI labels.

Products get a type, brand, colour, material, size and price; their titles and descriptions use
only canonical words. Each query starts from a real product (so it has at least one Exact match),
keeps a random subset of that product's attributes as its canonical rewrite, and then gets shopper
noise (:mod:`minielm.data.noise`). Labels come from attributes: Exact (type and every named
attribute match), Substitute (same type with a differing attribute, or a substitute type),
Complement (a complementary type), Irrelevant (anything else, including look-alikes that share a
colour, brand or material). Splits are by canonical query, so the noisy variants of one intent
never straddle train and test. Everything is a function of the seed.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from minielm.data import esci
from minielm.data.esci import EsciData
from minielm.data.noise import Slot, noisy_slots, slot_edits
from minielm.data.vocabulary import (
    BRANDS,
    COLOURS,
    FEATURES,
    OUT_OF_CATALOG_CLASS,
    OUT_OF_CATALOG_QUERIES,
    PRODUCT_TYPES,
    TITLE_MARKETING,
    UNITS,
    NoiseRates,
)
from minielm.logs import get_logger

log = get_logger(__name__)

SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
CATEGORY_BLURBS = {
    "kitchen": "Built for everyday cooking and easy cleaning.",
    "furniture": "Sturdy construction with simple assembly.",
    "apparel": "Comfortable fit for all day wear.",
    "electronics": "Reliable performance with a one year warranty.",
    "home": "Adds comfort and style to any room.",
    "sports": "Made for training, travel and the outdoors.",
    "beauty": "Gentle on skin and hair, made for daily care.",
    "pets": "Safe and comfortable for cats and dogs.",
    "toys": "Fun for kids and families, safety tested.",
    "office": "Keeps your desk organised and your work moving.",
}
# How often a product of a category carries a model number in its title ("X200", "SM-G991").
MODEL_NUMBER_SHARE = {"electronics": 0.8}
DEFAULT_MODEL_NUMBER_SHARE = 0.25
FEATURE_SHARE = 0.5  # products that carry one feature ("bpa free", "noise cancelling") in their title
OUT_OF_CATALOG_QUALIFIERS = ("", "", "", "organic", "for kids", "2 pack", "refill", "set", "large", "travel")


@dataclass(frozen=True)
class JudgmentSizes:
    """How many products of each kind are judged per query (Exact matches are all judged up to the cap)."""

    max_exact: int = 50
    same_type_substitutes: int = 6
    substitute_types: int = 3
    complements: int = 3
    hard_irrelevant: int = 4
    random_irrelevant: int = 4


@dataclass
class _Catalog:
    frame: pd.DataFrame
    type_codes: np.ndarray
    attributes: dict[str, np.ndarray]  # attribute name -> per-product string values
    codes: dict[str, np.ndarray]  # attribute name -> per-product integer codes (fast matching)
    by_type: list[np.ndarray]  # product indices of each type


def _size_text(product_type, size: str) -> str:
    if not size:
        return ""
    return f"{size} {UNITS[product_type.unit][0]}" if product_type.unit else size


def _title_case(values: np.ndarray) -> np.ndarray:
    codes, uniques = pd.factorize(values)
    return np.asarray([str(u).title() for u in uniques], dtype=object)[codes]


def _prefixed(prefix: str, values: np.ndarray, suffix: str = "") -> np.ndarray:
    """``prefix + value + suffix`` where the value is non-empty, else ''."""
    return np.where(values != "", prefix + values + suffix, "")


def _model_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Model numbers in three common shapes: ``x200``, ``sm-g991``, ``500d`` (column-wise, for 1M products)."""
    letters = np.asarray(list("abcdefghjkmnprstvwxz"), dtype=object)
    a, b, c = (letters[rng.integers(0, len(letters), n)] for _ in range(3))
    digits = np.char.mod("%d", rng.integers(100, 1000, n)).astype(object)
    long_digits = np.char.mod("%d", rng.integers(100, 10000, n)).astype(object)
    shapes = rng.integers(0, 3, n)
    return np.where(shapes == 0, a + digits, np.where(shapes == 1, a + b + "-" + c + digits, long_digits + a))


def _titles(templates, brand, type_names, size_text, material, colour, marketing, feature, model) -> np.ndarray:
    """Three title layouts, built column-wise (a Python call per product is too slow at 1M)."""
    brand, type_names, material = _title_case(brand), _title_case(type_names), _title_case(material)
    colour, size = _title_case(colour), _title_case(size_text)
    layouts = (
        brand + " " + type_names + _prefixed(" ", size) + ", " + material + ", " + colour,
        brand + " " + colour + " " + material + " " + type_names + _prefixed(" - ", size),
        type_names + " by " + brand + ", " + _prefixed("", size, " ") + colour + " " + material,
    )
    titles = np.where(templates == 0, layouts[0], np.where(templates == 1, layouts[1], layouts[2]))
    model = np.asarray([m.upper() for m in model], dtype=object) if len(model) else model
    return titles + _prefixed(", ", feature) + _prefixed(" ", model) + _prefixed(", ", marketing)


def _generate_catalog(n_products: int, rng: np.random.Generator, show_progress: bool) -> _Catalog:
    n_types = len(PRODUCT_TYPES)
    type_codes = rng.integers(0, n_types, n_products)
    brand = np.empty(n_products, dtype=object)
    material = np.empty(n_products, dtype=object)
    size = np.empty(n_products, dtype=object)
    size_text = np.empty(n_products, dtype=object)
    price = np.empty(n_products, dtype=np.float64)
    colour = np.asarray(COLOURS, dtype=object)[rng.integers(0, len(COLOURS), n_products)]
    feature = np.full(n_products, "", dtype=object)
    model = np.full(n_products, "", dtype=object)
    by_type = []
    for code, product_type in enumerate(tqdm(PRODUCT_TYPES, desc="catalog", disable=not show_progress, leave=False)):
        members = np.flatnonzero(type_codes == code)
        by_type.append(members)
        brands = BRANDS[product_type.category]
        brand[members] = np.asarray(brands, dtype=object)[rng.integers(0, len(brands), len(members))]
        material[members] = np.asarray(product_type.materials, dtype=object)[
            rng.integers(0, len(product_type.materials), len(members))
        ]
        if product_type.sizes:
            chosen = np.asarray(product_type.sizes, dtype=object)[
                rng.integers(0, len(product_type.sizes), len(members))
            ]
        else:
            chosen = np.full(len(members), "", dtype=object)
        size[members] = chosen
        size_text[members] = chosen + " " + UNITS[product_type.unit][0] if product_type.unit else chosen
        price[members] = np.round(product_type.base_price * rng.lognormal(0.0, 0.3, len(members)), 2)
        features = np.asarray(FEATURES[product_type.category], dtype=object)
        has_feature = rng.random(len(members)) < FEATURE_SHARE
        feature[members] = np.where(has_feature, features[rng.integers(0, len(features), len(members))], "")
        share = MODEL_NUMBER_SHARE.get(product_type.category, DEFAULT_MODEL_NUMBER_SHARE)
        model[members] = np.where(rng.random(len(members)) < share, _model_numbers(rng, len(members)), "")
    type_names = np.asarray([t.name for t in PRODUCT_TYPES], dtype=object)[type_codes]
    categories = np.asarray([t.category for t in PRODUCT_TYPES], dtype=object)[type_codes]
    templates = rng.integers(0, 3, n_products)
    marketing = np.asarray(TITLE_MARKETING, dtype=object)[rng.integers(0, len(TITLE_MARKETING), n_products)]
    titles = _titles(templates, brand, type_names, size_text, material, colour, marketing, feature, model)
    blurbs = np.asarray([CATEGORY_BLURBS[t.category] for t in PRODUCT_TYPES], dtype=object)[type_codes]
    descriptions = _title_case(brand) + " " + type_names + " made of " + material + " in " + colour + ". " + blurbs
    bullets = "Material: " + material + "\nColour: " + colour + _prefixed("\nSize: ", size_text)
    frame = pd.DataFrame(
        {
            esci.PRODUCT_ID: [f"P{i:09d}" for i in range(n_products)],
            esci.PRODUCT_LOCALE: "us",
            esci.PRODUCT_TITLE: titles,
            esci.PRODUCT_DESCRIPTION: descriptions,
            esci.PRODUCT_BULLET_POINT: bullets,
            esci.PRODUCT_BRAND: brand,
            esci.PRODUCT_COLOR: colour,
            "product_type": type_names,
            "category": categories,
            "material": material,
            "size": size_text,
            "feature": feature,
            "model": model,
            "price": price,
            "rating": np.round(np.clip(rng.normal(4.2, 0.5, n_products), 1.0, 5.0), 1),
            "popularity": np.round(rng.beta(1.2, 6.0, n_products), 4),
        }
    )
    attributes = {
        "brand": brand,
        "colour": colour,
        "material": material,
        "size": size,
        "feature": feature,
        "model": model,
    }
    codes = {name: pd.factorize(values)[0] for name, values in attributes.items()}
    return _Catalog(frame=frame, type_codes=type_codes, attributes=attributes, codes=codes, by_type=by_type)


_ATTRIBUTE_PROBABILITY = {"brand": 0.3, "colour": 0.45, "material": 0.3, "size": 0.35, "feature": 0.3, "model": 0.1}


def _canonical_slots(catalog: _Catalog, product: int, rng: random.Random) -> tuple[list[Slot], dict[str, str]]:
    """The canonical query for one seed product: its type plus a random subset of its attributes."""
    product_type = PRODUCT_TYPES[catalog.type_codes[product]]
    wanted = {
        name: catalog.attributes[name][product]
        for name, p in _ATTRIBUTE_PROBABILITY.items()
        if rng.random() < p and catalog.attributes[name][product]
    }
    slots = [Slot(role, wanted[role]) for role in ("brand", "model", "colour", "material") if role in wanted]
    slots.append(Slot("type", product_type.name))
    if "feature" in wanted:
        slots.append(Slot("feature", wanted["feature"]))
    if "size" in wanted:
        value = wanted["size"]
        if product_type.unit:
            slots.append(Slot("size", _size_text(product_type, value), number=value, unit=product_type.unit))
        else:
            slots.append(Slot("size", value))
    return slots, wanted


def _sample(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct members of ``pool``, without permuting a large pool."""
    if n <= 0 or len(pool) == 0:
        return pool[:0]
    if len(pool) <= n:
        return pool
    if len(pool) < 20 * n:
        return rng.choice(pool, n, replace=False)
    drawn = np.unique(rng.integers(0, len(pool), 2 * n))
    return pool[rng.permutation(drawn)[:n]]


def _judge(
    catalog: _Catalog, product: int, wanted: dict[str, str], sizes: JudgmentSizes, rng: np.random.Generator
) -> list[tuple[int, str]]:
    """(product index, ESCI label) pairs judged for one query."""
    code = catalog.type_codes[product]
    product_type = PRODUCT_TYPES[code]
    members = catalog.by_type[code]
    exact_mask = np.ones(len(members), dtype=bool)
    for name in wanted:
        exact_mask &= catalog.codes[name][members] == catalog.codes[name][product]
    exact = members[exact_mask]
    exact = np.concatenate([[product], _sample(rng, exact[exact != product], sizes.max_exact - 1)])
    judged: list[tuple[int, str]] = [(int(i), "E") for i in exact]
    judged += [(int(i), "S") for i in _sample(rng, members[~exact_mask], sizes.same_type_substitutes)]
    substitute_pool = _members_of(catalog, product_type.substitutes)
    judged += [(int(i), "S") for i in _sample(rng, substitute_pool, sizes.substitute_types)]
    judged += [(int(i), "C") for i in _sample(rng, _members_of(catalog, product_type.complements), sizes.complements)]
    related = {code} | {_type_code(n) for n in product_type.substitutes + product_type.complements}
    candidates = rng.integers(0, len(catalog.type_codes), 8 * (sizes.hard_irrelevant + sizes.random_irrelevant) + 8)
    candidates = candidates[~np.isin(catalog.type_codes[candidates], list(related))]
    shares = np.zeros(len(candidates), dtype=bool)
    for name in ("colour", "brand", "material"):
        if name in wanted:
            shares |= catalog.codes[name][candidates] == catalog.codes[name][product]
    hard = np.unique(candidates[shares])[: sizes.hard_irrelevant]
    easy = np.unique(candidates[~shares])[: sizes.random_irrelevant]
    judged += [(int(i), "I") for i in np.concatenate([hard, easy])]
    seen: set[int] = set()
    return [(i, label) for i, label in judged if not (i in seen or seen.add(i))]


_TYPE_CODES = {t.name: i for i, t in enumerate(PRODUCT_TYPES)}


def _type_code(name: str) -> int:
    return _TYPE_CODES[name]


def _members_of(catalog: _Catalog, type_names: tuple[str, ...]) -> np.ndarray:
    if not type_names:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([catalog.by_type[_type_code(n)] for n in type_names])


def split_of(canonical_query: str, seed: int) -> str:
    """The split of every query with this canonical rewrite: a fixed function of the text and the seed."""
    fraction = zlib.crc32(f"{seed}:{canonical_query}".encode()) / 2**32
    names = list(SPLIT_FRACTIONS)
    bounds = np.cumsum(list(SPLIT_FRACTIONS.values()))
    return names[min(int(np.searchsorted(bounds, fraction, side="right")), len(names) - 1)]


def _out_of_catalog_judgments(catalog: _Catalog, sizes: JudgmentSizes, rng: np.random.Generator) -> list[tuple]:
    """A query for something the catalog does not sell: a few random products, all Irrelevant."""
    n = sizes.hard_irrelevant + sizes.random_irrelevant
    return [(int(i), "I") for i in np.unique(rng.integers(0, len(catalog.type_codes), n))]


def _novelty(edits: list[tuple[str, str]], split: str, train_edits: set[tuple[str, str]]) -> str:
    if not edits:
        return "none"
    if split == "train" or all(edit in train_edits for edit in edits):
        return "seen"
    return "unseen"


def generate_dataset(
    n_products: int = 2000,
    n_queries: int = 600,
    seed: int = 0,
    noise: NoiseRates | None = None,
    judgments: JudgmentSizes | None = None,
    show_progress: bool = False,
) -> EsciData:
    """A synthetic catalog and labelled noisy queries in the ESCI layout.

    Examples carry ``canonical_query`` (the oracle rewrite), ``noise`` (the noise kinds applied,
    comma-separated; empty when the query is clean; ``out_of_catalog`` for a product the catalog
    does not sell, whose canonical rewrite is the query itself) and ``noise_novelty`` (``unseen``
    when a validation or test query's noise contains an edit no train query shows, ``seen``
    otherwise, ``none`` without noise). Test and validation queries may draw the lexicon forms
    reserved for their split (disjoint sets); train never does. Products carry product_type, category,
    material, size, feature, model, price, rating and popularity.
    """
    if n_products < 1:
        raise ValueError(f"n_products: expected >= 1, got {n_products}")
    if n_queries < 1:
        raise ValueError(f"n_queries: expected >= 1, got {n_queries}")
    noise = noise or NoiseRates()
    judgments = judgments or JudgmentSizes()
    rng = np.random.default_rng(seed)
    catalog = _generate_catalog(n_products, rng, show_progress)
    query_rng = random.Random(seed)
    seeds = rng.integers(0, n_products, n_queries)
    rows = []
    queries = []  # (split, edits) per query, for the novelty column
    for number, product in enumerate(tqdm(seeds, desc="queries", disable=not show_progress, leave=False)):
        query_id = f"q{number:08d}"
        if query_rng.random() < noise.out_of_catalog_fraction:
            qualifier = query_rng.choice(OUT_OF_CATALOG_QUALIFIERS)
            text = f"{query_rng.choice(OUT_OF_CATALOG_QUERIES)} {qualifier}".strip()
            split = split_of(text, seed)
            queries.append((split, []))
            for index, label in _out_of_catalog_judgments(catalog, judgments, rng):
                rows.append((text, query_id, index, label, text, OUT_OF_CATALOG_CLASS, split))
            continue
        slots, wanted = _canonical_slots(catalog, int(product), query_rng)
        canonical = " ".join(s.text for s in slots)
        split = split_of(canonical, seed)
        noisy, kinds = noisy_slots(slots, query_rng, noise, data_split=split)
        text = " ".join(s.text for s in noisy)
        queries.append((split, slot_edits(noisy)))
        for index, label in _judge(catalog, int(product), wanted, judgments, rng):
            rows.append((text, query_id, index, label, canonical, ",".join(kinds), split))
    train_edits = {edit for split, edits in queries if split == "train" for edit in edits}
    novelty = {f"q{n:08d}": _novelty(edits, split, train_edits) for n, (split, edits) in enumerate(queries)}
    examples = pd.DataFrame(
        rows,
        columns=[esci.QUERY, esci.QUERY_ID, "_index", esci.ESCI_LABEL, esci.CANONICAL_QUERY, esci.NOISE, esci.SPLIT],
    )
    split_column = examples.pop(esci.SPLIT)
    examples.insert(0, esci.EXAMPLE_ID, np.arange(len(examples), dtype=np.int64))
    examples.insert(3, esci.PRODUCT_ID, catalog.frame[esci.PRODUCT_ID].to_numpy()[examples.pop("_index").to_numpy()])
    examples.insert(4, esci.PRODUCT_LOCALE, "us")
    examples.insert(6, esci.SMALL_VERSION, 1)
    examples.insert(7, esci.LARGE_VERSION, 1)
    examples.insert(8, esci.SPLIT, split_column)
    examples[esci.NOISE_NOVELTY] = examples[esci.QUERY_ID].map(novelty)
    log.info("synthetic dataset generated", products=n_products, queries=n_queries, examples=len(examples), seed=seed)
    return EsciData(examples=examples, products=catalog.frame)
