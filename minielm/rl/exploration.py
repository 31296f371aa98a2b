"""The exploration bucket: a small share of served requests gets a non-greedy rewrite, so feedback can tell
rewrites of the same query apart.

Online RL learns from the reward spread within a group of rewrites of one query. Serving only the greedy
rewrite gives the feedback term one served rewrite per query, hence no spread (issue 17). A request whose id
hashes below ``serving.exploration_share`` is served instead the best-ranked beam rewrite that differs from
the greedy one and passes the intent guard (the model's own guard, else the rule-based check without a
vocabulary): an exploring shopper may get a different fix of their query, never one that drops a content word,
a negation or a number. The choice is a hash of the request id, not a random draw, so it is reproducible and
needs no shared state between serving threads. No safe alternative: the greedy rewrite is served, unmarked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from minielm.features.keys import normalize_query
from minielm.models.rewrite_guard import RewriteGuard


@dataclass(frozen=True)
class Exploration:
    """What an exploring request was served instead of the greedy rewrite."""

    rewrite: str
    rank: int  # 0-based rank of the served rewrite among the model's beam rewrites
    greedy: str

    def event_fields(self) -> dict[str, Any]:
        """The served-rewrite event's exploration fields."""
        return {"exploration": True, "exploration_rank": self.rank, "greedy_rewrite": self.greedy}


class ExplorationBucket:
    """Picks the exploring requests (``share`` of request ids) and their alternative rewrites."""

    def __init__(self, share: float, candidates: int) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"exploration share must be in [0, 1], got {share}")
        if candidates < 2:
            raise ValueError(f"exploration needs at least 2 beam candidates, got {candidates}")
        self.share, self.candidates = share, candidates

    def chosen(self, request_id: str) -> bool:
        """Whether this request explores: its id's hash, read as a number in [0, 1), is below the share."""
        digest = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.share

    def explore(
        self, model: Any, request_ids: Sequence[str], queries: Sequence[str], greedy: Sequence[str]
    ) -> list[Exploration | None]:
        """Per request: the alternative it is served, or None (not in the bucket, or no safe alternative).
        One beam-search call for the exploring requests of the batch; nothing runs when none explores."""
        picked = [i for i, request_id in enumerate(request_ids) if self.share > 0 and self.chosen(request_id)]
        result: list[Exploration | None] = [None] * len(queries)
        if not picked:
            return result
        guard = getattr(model, "guard", None) or RewriteGuard()
        beams = model.rewrite([queries[i] for i in picked], num_return=self.candidates)
        for i, options in zip(picked, beams):
            served = normalize_query(greedy[i])
            for rank, text in enumerate(options):
                if normalize_query(text) != served and guard.allows(queries[i], text):
                    result[i] = Exploration(text, rank, greedy[i])
                    break
        return result
