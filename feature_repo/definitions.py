"""MiniELM feature definitions: query statistics, product features and the head-query rewrite cache.

Entities, sources, views and services only; nothing here knows an environment. The offline parquet
files live under ``$MINIELM_FEAST_OFFLINE_ROOT`` (the cluster sets an ``s3://`` URI) or, by default,
under ``data/`` next to this file in the applied repo (``minielm features apply`` writes
``feature_store.yaml`` beside it with absolute paths).
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Float64, Int64, String

OFFLINE_ROOT = os.environ.get("MINIELM_FEAST_OFFLINE_ROOT") or str(Path(__file__).resolve().parent / "data")
S3_ENDPOINT = os.environ.get("MINIELM_FEAST_S3_ENDPOINT") or None
TTL = timedelta(days=int(os.environ.get("MINIELM_FEAST_TTL_DAYS", "30")))

query = Entity(
    name="query",
    join_keys=["query_key"],
    value_type=ValueType.STRING,
    description="A shopper query, keyed by minielm.features.keys.query_key (sha1 of the normalised text).",
)

product = Entity(
    name="product",
    join_keys=["product_id"],
    value_type=ValueType.STRING,
    description="A catalog product (ESCI product_id).",
)

rewriter_version = Entity(
    name="rewriter_version",
    join_keys=["model_version"],
    value_type=ValueType.STRING,
    description="A registered version of the served rewriter (the registry's version string).",
)

query_stats_source = FileSource(
    name="query_stats_source",
    path=f"{OFFLINE_ROOT}/query_stats.parquet",
    timestamp_field="event_timestamp",
    s3_endpoint_override=S3_ENDPOINT,
)

query_stats_push = PushSource(name="query_stats_push", batch_source=query_stats_source)

product_features_source = FileSource(
    name="product_features_source",
    path=f"{OFFLINE_ROOT}/product_features.parquet",
    timestamp_field="event_timestamp",
    s3_endpoint_override=S3_ENDPOINT,
)

rewrite_cache_source = FileSource(
    name="rewrite_cache_source",
    path=f"{OFFLINE_ROOT}/rewrite_cache.parquet",
    timestamp_field="event_timestamp",
    s3_endpoint_override=S3_ENDPOINT,
)

query_stats = FeatureView(
    name="query_stats",
    entities=[query],
    ttl=TTL,
    schema=[
        Field(name="volume", dtype=Int64),
        Field(name="ctr", dtype=Float32),
        Field(name="add_to_cart_rate", dtype=Float32),
        Field(name="reformulation_rate", dtype=Float32),
        Field(name="zero_result_rate", dtype=Float32),
        Field(name="last_seen_ts", dtype=Float64),
    ],
    source=query_stats_push,
    online=True,
    description="Traffic statistics per query, streamed from the feedback aggregator through the push source.",
)

product_features = FeatureView(
    name="product_features",
    entities=[product],
    ttl=TTL,
    schema=[
        Field(name="category", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="price", dtype=Float32),
        Field(name="popularity", dtype=Float32),
        Field(name="rating", dtype=Float32),
    ],
    source=product_features_source,
    online=True,
    description="Catalog attributes and popularity per product, materialised from the offline store.",
)

rewrite_cache = FeatureView(
    name="rewrite_cache",
    entities=[query, rewriter_version],
    ttl=TTL,
    schema=[
        Field(name="query", dtype=String),
        Field(name="rewrite", dtype=String),
        Field(name="score", dtype=Float32),
        Field(name="produced_by", dtype=String),
        Field(name="written_ts", dtype=Float64),
    ],
    source=rewrite_cache_source,
    online=True,
    description="Rewrites of the head queries by one rewriter version (query text as rewritten, the rewrite, its "
    "score, the version that produced it), written online by `minielm features warm-cache` after a promotion.",
)

rewriter_v1 = FeatureService(
    name="rewriter_v1", features=[query_stats], description="What the query rewriter reads per request."
)

ranker_v1 = FeatureService(
    name="ranker_v1", features=[query_stats, product_features], description="What ranking reads per (query, product)."
)
