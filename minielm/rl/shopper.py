"""The independent simulated shopper that scores a replay canary.

A candidate must win on what shoppers get, judged by someone other than the RL reward judge (the relevance
student the policy was trained to please): the simulator's judge (``feedback.shopper_judge``), either the
catalog attributes of the products each query was generated for, or the relevance teacher reading the typed
query. For each replayed query it scores the products a rewrite retrieves against what the ORIGINAL query
wants, weighted by the simulator's examination model (P(examine rank r) = 1 / (1 + r) ** decay): the
expected relevance of what a shopper looks at, in [0, 1]; fewer results than ``top_k`` count as empty slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from minielm.config import Settings
from minielm.logs import get_logger
from minielm.rl.errors import RLInputError

log = get_logger(__name__)


class ShopperJudge(Protocol):
    def score_shown(self, queries: Sequence[str], product_ids: Sequence[str]) -> np.ndarray: ...


class ShopperScorer:
    """Per (query, rewrite): the examination-weighted shopper judgement of the rewrite's top ``top_k`` results."""

    def __init__(
        self,
        judge: ShopperJudge,
        search: Callable[[list[str], int], list[list[str]]],
        top_k: int,
        examination_decay: float,
        name: str,
    ) -> None:
        if top_k < 1:
            raise RLInputError(f"shopper scorer: top_k must be >= 1, got {top_k}")
        self.judge, self.search, self.top_k, self.name = judge, search, top_k, name
        self.weights = 1.0 / (1.0 + np.arange(top_k)) ** examination_decay

    def __call__(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        if len(queries) != len(rewrites):
            raise RLInputError(f"shopper scorer: {len(queries)} queries but {len(rewrites)} rewrites")
        if not queries:
            return np.zeros(0)
        hits = [row[: self.top_k] for row in self.search(list(rewrites), self.top_k)]
        flat = self.judge.score_shown(
            [q for q, row in zip(queries, hits) for _ in row], [p for row in hits for p in row]
        )
        scores, start = np.zeros(len(queries)), 0
        for i, row in enumerate(hits):
            judged = np.clip(np.asarray(flat[start : start + len(row)], dtype=np.float64), 0.0, 1.0)
            scores[i] = float(judged @ self.weights[: len(row)]) / float(self.weights.sum())
            start += len(row)
        return scores


def independent_shopper(settings: Settings, data, search, store=None, workdir: Path | None = None) -> ShopperScorer:
    """The replay canary's shopper, built as ``feedback.shopper_judge`` says (never the RL reward judge).

    ``attributes`` needs the products' attribute columns; ``relevance_teacher`` loads the newest registered
    version of ``models.teacher_relevance`` (``store`` and ``workdir`` needed)."""
    from minielm.feedback.simulator import AttributeShopperJudge, TextShopperJudge, product_texts_from

    feedback = settings.feedback
    top_k, decay = feedback.sim_top_k, feedback.examination_decay
    if feedback.shopper_judge == "attributes":
        try:
            judge = AttributeShopperJudge(data.products, data.examples)
        except ValueError as error:
            raise RLInputError(f"feedback.shopper_judge=attributes: {error}") from None
        return ShopperScorer(judge, search, top_k, decay, "shopper:attributes")
    from minielm.models.relevance_teacher import RelevanceTeacher
    from minielm.registry import ModelRegistry

    name = settings.models.teacher_relevance
    versions = ModelRegistry(store).versions(name) if store is not None else []
    if not versions or workdir is None:
        raise RLInputError(
            f"feedback.shopper_judge=relevance_teacher: the registry holds no version of {name!r} "
            "(models.teacher_relevance) to judge the canary; register the relevance teacher or use attributes"
        )
    version = versions[-1]
    teacher = RelevanceTeacher.load(ModelRegistry(store).download(name, version, Path(workdir) / "shopper"), version)
    judge = TextShopperJudge(teacher, product_texts_from(data.products))
    return ShopperScorer(judge, search, top_k, decay, f"shopper:relevance_teacher {version}")
