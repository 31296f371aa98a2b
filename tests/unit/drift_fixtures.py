"""Shared, process-cached inputs of the drift tests: synthetic datasets, windows, the encoder.

Embedding queries is the costly part (tens of queries per second on a busy 2-core machine), so the
datasets are small, each window embeds a sample of 300 requests, and one encoder (with its cache of
vectors) serves every drift test in the session.
"""

from __future__ import annotations

from functools import cache, lru_cache

from minielm.config import DriftConfig
from minielm.drift import simulate
from minielm.drift.descriptors import CATALOG_TEXT_COLUMNS, build_vocabulary
from minielm.drift.embeddings import QueryEncoder, shared_encoder

WINDOW_REQUESTS = 600
SAMPLE = 300
SAME_DISTRIBUTION_SEEDS = (1, 2, 3, 4, 5)


@cache
def dataset(seed: int):
    from minielm.data.synthetic import generate_dataset

    return generate_dataset(n_products=300, n_queries=400, seed=seed)


@lru_cache(maxsize=1)
def catalog_words() -> frozenset[str]:
    products = dataset(0).products
    return build_vocabulary(
        text for column in CATALOG_TEXT_COLUMNS if column in products for text in products[column].astype(str)
    )


def reference_window():
    return simulate.served_requests(dataset(0), WINDOW_REQUESTS, seed=100)


def current_window(traffic_seed: int, **kwargs):
    """Fresh traffic over the reference's catalog and queries: the same distribution. (Catalogs of 300 products
    drawn with other seeds are not: the generator has ~200 product types and 400 brands, so two small catalogs
    share little vocabulary, and the drift checks rightly see that.)"""
    return simulate.served_requests(dataset(0), WINDOW_REQUESTS, seed=200 + traffic_seed, **kwargs)


def drift_config(**overrides) -> DriftConfig:
    return DriftConfig(embedding_sample_size=SAMPLE, **overrides)


def encoder() -> QueryEncoder:
    # One torch thread: on a machine shared by many jobs, two spinning threads are slower than one.
    return shared_encoder(threads=1)
