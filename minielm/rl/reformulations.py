"""Reformulation mining: what shoppers typed next after a result list that did not satisfy them.

A shopper who finds nothing relevant often retypes the query in words the catalog uses (``telly`` ->
``television``). Those next queries are the one source of words the policy has never produced: a noise
form that no training query showed gets no right candidate from the policy's own beams or samples, so RL
has nothing to prefer. Mined reformulations join the query's candidate group (like served rewrites); the
reward still decides whether they help, so a reformulation to another need simply loses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from minielm.features.keys import normalize_query
from minielm.feedback.events import FeedbackEvent


def mined_reformulations(events: Iterable[FeedbackEvent], max_per_query: int = 2) -> dict[str, list[str]]:
    """Per normalised query, the distinct next queries shoppers typed after it, most frequent first (ties in
    first-seen order), at most ``max_per_query``; a reformulation without a next query or equal to the query
    itself says nothing and is skipped."""
    if max_per_query < 1:
        raise ValueError(f"max_per_query must be >= 1, got {max_per_query}")
    counts: dict[str, Counter] = {}
    for event in events:
        if event.event_type != "reformulation" or not event.reformulated_query:
            continue
        query, typed_next = normalize_query(event.query), " ".join(event.reformulated_query.split())
        if normalize_query(typed_next) == query:
            continue
        counts.setdefault(query, Counter())[typed_next] += 1
    return {query: [text for text, _ in counter.most_common(max_per_query)] for query, counter in counts.items()}
