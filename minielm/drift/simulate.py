"""Served-request windows simulated from a synthetic dataset, and the shifts the monitor must catch.

Frames have the feedback-window columns (see ``minielm.feedback.windows.WINDOW_COLUMNS``), so tests,
the benchmark and the demo's fallback can exercise the drift job without live traffic. The shifts
model what goes wrong in production: shoppers looking for categories the catalog lacks, a new
language mix, a rewriter that stopped rewriting, and a click-through collapse.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from minielm.config import FeedbackConfig
from minielm.features.keys import query_key
from minielm.feedback.windows import reward

# Product kinds the synthetic catalog never sells (checked against the words of a 20,000-product catalog), with
# attributes shoppers add.
NEW_CATEGORY_HEADS = (
    "lawn mower",
    "guitar strings",
    "baby stroller",
    "printer ink",
    "aquarium filter",
    "motor oil",
    "violin rosin",
    "tractor tire",
    "snowboard wax",
    "hearing aid",
    "bird seed",
    "piano bench",
    "drum sticks",
    "aquarium gravel",
    "chainsaw chain",
    "sewing needles",
)
NEW_CATEGORY_MODIFIERS = (
    "50 ft",
    "grain free",
    "clumping",
    "self propelled",
    "waterproof",
    "telescopic",
    "nickel wound",
    "lightweight",
    "black xl",
    "for 20 gallon",
    "adult",
    "5w-30",
    "heavy duty",
    "with light",
    "anti fog",
    "bluetooth",
)
# Queries in other languages (Spanish, German, French, Portuguese, Chinese, Japanese, Korean).
FOREIGN_QUERIES = (
    "zapatos de cuero para hombre",
    "cafetera de acero inoxidable 12 tazas",
    "sartén antiadherente 28 cm",
    "toallas de cocina algodón",
    "auriculares inalámbricos con cancelación de ruido",
    "mochila impermeable niños",
    "kaffeemaschine edelstahl 12 tassen",
    "bratpfanne gusseisen 28 cm",
    "kopfhörer kabellos geräuschunterdrückung",
    "wasserflasche edelstahl 1 liter",
    "bettwäsche baumwolle 200x200",
    "schreibtischstuhl ergonomisch",
    "poêle antiadhésive 28 cm",
    "cafetière inox programmable",
    "écouteurs sans fil réduction de bruit",
    "gourde isotherme acier inoxydable",
    "chaussures de course femme",
    "panela de pressão elétrica 6 litros",
    "fone de ouvido sem fio",
    "garrafa térmica inox",
    "不粘锅 平底锅 28厘米",
    "无线 降噪 耳机",
    "不锈钢 保温杯 500毫升",
    "电热水壶 1.7升",
    "纯棉 毛巾 套装",
    "ワイヤレスイヤホン ノイズキャンセリング",
    "ステンレス 水筒 500ml",
    "フライパン 26cm IH対応",
    "電気ケトル 1.2L",
    "무선 이어폰 노이즈캔슬링",
    "스테인리스 텀블러",
    "프라이팬 28cm",
)


def served_requests(
    data,
    n_requests: int,
    seed: int,
    *,
    broken_rewriter: bool = False,
    ctr: float = 0.45,
    reformulation_rate: float = 0.25,
    zero_result_rate: float = 0.05,
    model_version: str = "v1",
    start_ts: float = 1.7e9,
) -> pd.DataFrame:
    """``n_requests`` served requests drawn from the dataset's queries (one row each, window layout).

    The rewriter is the oracle (the canonical query) unless ``broken_rewriter`` (it echoes the query).
    Outcomes follow the given rates; the reward uses the feedback aggregator's default weights.
    """
    rng = np.random.default_rng(seed)
    pairs = data.examples[["query", "canonical_query"]].drop_duplicates("query").reset_index(drop=True)
    picked = pairs.iloc[rng.integers(0, len(pairs), n_requests)].reset_index(drop=True)
    queries = picked["query"].astype(str)
    rewrites = queries if broken_rewriter else picked["canonical_query"].astype(str)
    return _with_outcomes(queries, rewrites, rng, ctr, reformulation_rate, zero_result_rate, model_version, start_ts)


def _with_outcomes(
    queries: pd.Series,
    rewrites: pd.Series,
    rng: np.random.Generator,
    ctr: float,
    reformulation_rate: float,
    zero_result_rate: float,
    model_version: str,
    start_ts: float,
) -> pd.DataFrame:
    n = len(queries)
    weights = FeedbackConfig()
    zero = rng.random(n) < zero_result_rate
    n_results = np.where(zero, 0, rng.integers(1, 60, n))
    clicked = ~zero & (rng.random(n) < ctr / max(1e-9, 1 - zero_result_rate))
    clicks = clicked * (1 + rng.poisson(0.3, n))
    carts = clicked & (rng.random(n) < weights.add_to_cart_given_click)
    purchases = carts & (rng.random(n) < weights.purchase_given_cart)
    reformulated = ~clicked & (rng.random(n) < min(1.0, reformulation_rate / max(1e-9, 1 - ctr)))
    return pd.DataFrame(
        {
            "request_id": [uuid.UUID(int=int(x)).hex for x in rng.integers(0, 2**63, n)],
            "query": queries.to_numpy(),
            "query_key": [query_key(q) for q in queries],
            "rewrite": rewrites.to_numpy(),
            "model_name": "student-rewriter",
            "model_version": model_version,
            "ts": start_ts + np.sort(rng.random(n)) * 3600,
            "n_results": n_results.astype(np.int64),
            "impressions": np.minimum(n_results, 10).astype(np.int64),
            "clicks": clicks.astype(np.int64),
            "add_to_carts": carts.astype(np.int64),
            "purchases": purchases.astype(np.int64),
            "reformulated": reformulated,
            "reward": reward(clicks, carts, purchases, reformulated, weights).astype(float),
        }
    )


def _replace_share(window: pd.DataFrame, share: float, queries: list[str], rng: np.random.Generator) -> pd.DataFrame:
    shifted = window.copy()
    rows = np.flatnonzero(rng.random(len(window)) < share)
    chosen = [queries[i] for i in rng.integers(0, len(queries), len(rows))]
    shifted.loc[rows, "query"] = chosen
    shifted.loc[rows, "rewrite"] = chosen
    shifted.loc[rows, "query_key"] = [query_key(q) for q in chosen]
    return shifted


def with_new_categories(window: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """A share of the requests become searches for product kinds the catalog does not carry."""
    rng = np.random.default_rng(seed)
    queries = [f"{head} {modifier}" for head in NEW_CATEGORY_HEADS for modifier in NEW_CATEGORY_MODIFIERS]
    return _replace_share(window, share, queries, rng)


def with_language_mix(window: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """A share of the requests become queries in other languages."""
    return _replace_share(window, share, list(FOREIGN_QUERIES), np.random.default_rng(seed))


def with_ctr_collapse(window: pd.DataFrame, keep: float, seed: int) -> pd.DataFrame:
    """Only ``keep`` of the clicks remain (a ranking or serving incident); the reward follows."""
    rng = np.random.default_rng(seed)
    shifted = window.copy()
    lost = (shifted["clicks"] > 0).to_numpy() & (rng.random(len(shifted)) >= keep)
    weights = FeedbackConfig()
    for column in ("clicks", "add_to_carts", "purchases"):
        shifted.loc[lost, column] = 0
    shifted.loc[lost, "reformulated"] = rng.random(int(lost.sum())) < weights.reformulation_prob
    kept = shifted.loc[lost]
    shifted.loc[lost, "reward"] = reward(
        kept["clicks"], kept["add_to_carts"], kept["purchases"], kept["reformulated"], weights
    ).astype(float)
    return shifted
