"""Tiny catalogs, tiny encoders and rule-based stand-in teachers for the distillation tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from minielm.distill.augment import build_triples, label_triples

COLORS = ["red", "blue", "black", "white", "green"]
TYPES = ["shoe", "lamp", "mug", "chair", "jacket", "kettle"]
CATEGORY = {
    "shoe": "apparel",
    "jacket": "apparel",
    "lamp": "home",
    "chair": "home",
    "mug": "kitchen",
    "kettle": "kitchen",
}


def tiny_catalog() -> pd.DataFrame:
    rows = [
        {"product_id": f"P{i:03d}", "product_title": f"{color} {kind}", "category": CATEGORY[kind]}
        for i, (color, kind) in enumerate(itertools.product(COLORS, TYPES))
    ]
    return pd.DataFrame(rows)


def product_texts(products: pd.DataFrame) -> dict[str, str]:
    return dict(zip(products["product_id"], products["product_title"]))


HELD_OUT_QUERIES = ["green chair", "white kettle", "blue jacket", "red mug"]


def overlap_training_triples(products: pd.DataFrame, teacher) -> pd.DataFrame:
    """Teacher-labelled triples of every colour x type query but the held-out ones (12 per query)."""
    queries = [f"{colour} {kind}" for colour in COLORS for kind in TYPES if f"{colour} {kind}" not in HELD_OUT_QUERIES]
    triples = build_triples(
        queries, products, overlap_retriever(products), triples_per_query=12, retrieval_depth=10, seed=0
    )
    return label_triples(triples, product_texts(products), teacher)


def held_out_pairs(products: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(queries, product texts): every held-out query against every product."""
    texts = list(product_texts(products).values())
    return [q for q in HELD_OUT_QUERIES for _ in texts], [t for _ in HELD_OUT_QUERIES for t in texts]


def overlap_retriever(products: pd.DataFrame):
    """Ranks products by shared words with the query (a deterministic stand-in for BM25)."""
    titles = product_texts(products)

    def retrieve(queries: list[str], k: int) -> list[list[str]]:
        out = []
        for q in queries:
            words = set(q.split())
            ranked = sorted(titles, key=lambda p: (-len(words & set(titles[p].split())), p))
            out.append(ranked[:k])
        return out

    return retrieve


class OverlapTeacher:
    """A rule-based relevance teacher: E when type and colour match, S for type only, C same category."""

    version = "overlap-teacher"

    def predict_proba(self, queries: Sequence[str], product_texts: Sequence[str]) -> np.ndarray:
        out = []
        for q, t in zip(queries, product_texts):
            qw, tw = set(q.split()), set(t.split())
            kind = next((w for w in tw if w in CATEGORY), None)
            same_type = kind in qw
            same_color = bool(qw & tw & set(COLORS))
            same_cat = any(CATEGORY.get(w) == CATEGORY.get(kind) for w in qw if w in CATEGORY)
            if same_type and same_color:
                p = [0.85, 0.1, 0.03, 0.02]
            elif same_type:
                p = [0.15, 0.7, 0.1, 0.05]
            elif same_cat:
                p = [0.03, 0.07, 0.6, 0.3]
            else:
                p = [0.01, 0.04, 0.05, 0.9]
            out.append(p)
        return np.asarray(out, dtype=np.float32).reshape(-1, 4)

    def score(self, queries, product_texts) -> np.ndarray:
        from minielm.models.relevance_score import expected_gain

        return expected_gain(self.predict_proba(queries, product_texts))


def tiny_vocab() -> dict[str, int]:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *COLORS, *TYPES, *sorted(set(CATEGORY.values()))]
    return {w: i for i, w in enumerate(words)}


def tiny_bert_scorer(max_length: int = 16, seed: int = 0):
    """A CrossEncoderScorer on a 2-layer, 32-wide BERT with a word-level vocabulary of the tiny catalog."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from minielm.models.cross_encoder import CrossEncoderScorer

    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast(vocab=tiny_vocab(), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return CrossEncoderScorer.from_encoder(BertModel(config, add_pooling_layer=False), tokenizer, max_length=max_length)
