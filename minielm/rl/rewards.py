"""The RL reward of a sampled rewrite, as separate terms combined by ``RLConfig.reward_weights``.

Gains (higher is better):
- feedback: tanh(observed reward / ``feedback_reward_scale``) of the (query, rewrite) pair in the feedback
  windows, in (-1, 1); a rewrite never served for a query gets that query's mean (no evidence either way),
  a query never served 0;
- judge: the relevance model's mean score of the top ``judge_top_k`` products the search returns
  for the rewrite, judged against the ORIGINAL query (the shopper's intent, not the rewrite's);
- retrieval_gain: (relevant products in the top k for the rewrite - for the raw query) / k, where
  the query has ESCI labels.
Every term is bounded: judge in [0, 1], retrieval_gain in [-1, 1].
Penalties (0 = none, 1 = full; subtracted):
- intent_drift: how far the query-rewrite similarity falls below the floor, as a share of the floor;
- degenerate: empty, repetitive (half the words repeated) or longer than ``max_rewrite_words``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from minielm.config import RLConfig
from minielm.features.keys import normalize_query, query_key
from minielm.models.interfaces import RelevanceScorer
from minielm.rl.similarity import Similarity

TERMS = ("feedback", "judge", "retrieval_gain", "intent_drift", "degenerate")
PENALTIES = ("intent_drift", "degenerate")


def clean_rewrite(completion: str) -> str:
    """The rewrite a completion encodes: its first line, single-spaced (as ``minielm.models.prompts``
    extracts it at serving time)."""
    return " ".join(completion.strip().split("\n", 1)[0].split())


def relevant_products(examples: pd.DataFrame, substitute_is_relevant: bool = False) -> dict[str, set[str]]:
    """Labelled relevant product ids per query id (Exact, plus Substitute when configured)."""
    labels = {"E", "S"} if substitute_is_relevant else {"E"}
    hits = examples[examples["esci_label"].isin(labels)]
    return {str(q): set(map(str, g)) for q, g in hits.groupby("query_id")["product_id"]}


def degenerate_penalty(rewrite: str, max_words: int) -> float:
    words = normalize_query(rewrite).split()
    if not words or len(words) > max_words:
        return 1.0
    repeated = 1 - len(set(words)) / len(words)
    return 1.0 if len(words) > 1 and repeated >= 0.5 else 0.0


@dataclass
class RewardModel:
    """Scores batches of (query, rewrite) pairs; caches searches and judgements within a run."""

    config: RLConfig
    index: object  # minielm.search.SearchIndex
    product_texts: dict[str, str]
    similarity: Similarity
    judge: RelevanceScorer | None = None
    relevant: dict[str, set[str]] = field(default_factory=dict)
    observed: dict[tuple[str, str], float] = field(default_factory=dict)
    top_k: int = 10
    _search_cache: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _judge_cache: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)
    _query_feedback: dict[str, float] | None = field(default=None, repr=False)

    def search(self, texts: Sequence[str]) -> list[list[str]]:
        todo = sorted({t for t in texts if t not in self._search_cache})
        if todo:
            self._search_cache.update(zip(todo, self.index.search(todo, max(self.top_k, self.config.judge_top_k))))
        return [self._search_cache[t] for t in texts]

    def feedback(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        if self._query_feedback is None:
            sums: dict[str, list[float]] = {}
            for (key, _), value in self.observed.items():
                sums.setdefault(key, []).append(value)
            self._query_feedback = {key: float(np.mean(values)) for key, values in sums.items()}
        keys = [query_key(q) for q in queries]
        raw = [
            self.observed.get((key, normalize_query(r)), self._query_feedback.get(key, 0.0))
            for key, r in zip(keys, rewrites)
        ]
        return np.tanh(np.asarray(raw, dtype=np.float64) / self.config.feedback_reward_scale)

    def judge_score(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        if self.judge is None:
            return np.zeros(len(queries))
        pairs = list(zip(queries, rewrites))
        todo = sorted({p for p in pairs if p not in self._judge_cache})
        flat_q, flat_t, owner = [], [], []
        for (query, rewrite), hits in zip(todo, self.search([r for _, r in todo])):
            for product_id in hits[: self.config.judge_top_k]:
                flat_q.append(query)
                flat_t.append(self.product_texts.get(product_id, ""))
                owner.append((query, rewrite))
        scores = np.asarray(self.judge.score(flat_q, flat_t), dtype=np.float64) if flat_q else np.zeros(0)
        sums: dict[tuple[str, str], float] = {}
        for pair, score in zip(owner, scores):
            sums[pair] = sums.get(pair, 0.0) + float(score)
        for pair in todo:  # zero results judge as 0: an empty page helps no shopper
            self._judge_cache[pair] = sums.get(pair, 0.0) / self.config.judge_top_k
        return np.asarray([self._judge_cache[p] for p in pairs])

    def retrieval_gain(
        self, queries: Sequence[str], rewrites: Sequence[str], query_ids: Sequence[str | None]
    ) -> np.ndarray:
        gains = np.zeros(len(queries))
        labelled = [i for i, q in enumerate(query_ids) if q is not None and str(q) in self.relevant]
        if not labelled:
            return gains
        raw_hits = self.search([queries[i] for i in labelled])
        new_hits = self.search([rewrites[i] for i in labelled])
        for i, raw, new in zip(labelled, raw_hits, new_hits):
            wanted = self.relevant[str(query_ids[i])]
            gains[i] = (len(wanted & set(new[: self.top_k])) - len(wanted & set(raw[: self.top_k]))) / self.top_k
        return gains

    def intent_drift(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        floor = self.config.intent_similarity_floor
        if floor == 0 or not queries:
            return np.zeros(len(queries))
        similarity = self.similarity(list(queries), list(rewrites))
        return np.clip((floor - similarity) / floor, 0.0, 1.0)

    def degenerate(self, rewrites: Sequence[str]) -> np.ndarray:
        return np.asarray([degenerate_penalty(r, self.config.max_rewrite_words) for r in rewrites])

    def terms(
        self, queries: Sequence[str], rewrites: Sequence[str], query_ids: Sequence[str | None] | None = None
    ) -> dict[str, np.ndarray]:
        """Every term for every pair, unweighted (penalties as positive amounts)."""
        query_ids = list(query_ids) if query_ids is not None else [None] * len(queries)
        return {
            "feedback": self.feedback(queries, rewrites),
            "judge": self.judge_score(queries, rewrites),
            "retrieval_gain": self.retrieval_gain(queries, rewrites, query_ids),
            "intent_drift": self.intent_drift(queries, rewrites),
            "degenerate": self.degenerate(rewrites),
        }

    def signed_weights(self) -> dict[str, float]:
        weights = self.config.reward_weights.model_dump()
        return {t: -weights[t] if t in PENALTIES else weights[t] for t in TERMS}

    def total(
        self, queries: Sequence[str], rewrites: Sequence[str], query_ids: Sequence[str | None] | None = None
    ) -> np.ndarray:
        weights = self.signed_weights()
        terms = self.terms(queries, rewrites, query_ids)
        return sum(weights[t] * terms[t] for t in TERMS)
