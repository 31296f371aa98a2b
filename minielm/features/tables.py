"""The offline feature tables, built from the catalog and from the aggregated feedback windows."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from minielm.features.keys import query_key

WINDOW_COLUMNS = ("query", "ts", "impressions", "clicks", "add_to_carts", "reformulated", "n_results")


def product_feature_table(
    products: pd.DataFrame, examples: pd.DataFrame | None = None, now: float | None = None
) -> pd.DataFrame:
    """category, brand, price, popularity, rating per product.

    Popularity is the product's share of Exact judgments, scaled so the most judged product has 1.
    Columns the catalog lacks (e.g. ``rating`` in ESCI) stay NaN: the online lookup serves defaults
    for them and counts the fallback.
    """
    if "product_id" not in products.columns:
        raise ValueError("products: expected a product_id column")
    frame = pd.DataFrame({"product_id": products["product_id"].astype(str)})
    frame["category"] = products["category"].astype(str) if "category" in products else ""
    frame["brand"] = products["product_brand"].fillna("").astype(str) if "product_brand" in products else ""
    frame["price"] = pd.to_numeric(products["price"], errors="coerce") if "price" in products else np.nan
    frame["rating"] = pd.to_numeric(products["rating"], errors="coerce") if "rating" in products else np.nan
    popularity = pd.Series(0.0, index=frame.index)
    if examples is not None and len(examples):
        exact = examples[examples["esci_label"] == "E"]["product_id"].astype(str).value_counts()
        if len(exact):
            popularity = frame["product_id"].map(exact / exact.max()).fillna(0.0)
    frame["popularity"] = popularity.astype("float32")
    frame["event_timestamp"] = pd.Timestamp(now or time.time(), unit="s", tz="UTC")
    return frame.drop_duplicates("product_id", keep="last").reset_index(drop=True)


def query_stats_table(windows: pd.DataFrame) -> pd.DataFrame:
    """volume, ctr, add_to_cart_rate, reformulation_rate, zero_result_rate, last_seen_ts per query key.

    ``windows`` has one row per served request (the feedback windows' layout). Rates are per
    impression (ctr, add-to-cart) or per request (reformulation, zero results).
    """
    missing = [c for c in WINDOW_COLUMNS if c not in windows.columns]
    if missing:
        raise ValueError(f"feedback windows: missing columns {missing}")
    if windows.empty:
        from minielm.features.repo import QUERY_STATS_COLUMNS, empty_table

        return empty_table(QUERY_STATS_COLUMNS)
    rows = windows.assign(
        query_key=windows["query_key"] if "query_key" in windows else windows["query"].map(query_key),
        zero=(windows["n_results"] == 0).astype(float),
        reformulated=windows["reformulated"].astype(float),
    )
    grouped = rows.groupby("query_key")
    impressions = grouped["impressions"].sum()
    safe = impressions.where(impressions > 0)
    table = pd.DataFrame(
        {
            "volume": grouped.size().astype("int64"),
            "ctr": (grouped["clicks"].sum() / safe).fillna(0.0),
            "add_to_cart_rate": (grouped["add_to_carts"].sum() / safe).fillna(0.0),
            "reformulation_rate": grouped["reformulated"].mean(),
            "zero_result_rate": grouped["zero"].mean(),
            "last_seen_ts": grouped["ts"].max().astype("float64"),
        }
    ).reset_index()
    table["event_timestamp"] = pd.to_datetime(table["last_seen_ts"], unit="s", utc=True)
    return table
