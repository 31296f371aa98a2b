"""Reformulation mining hands RL the words shoppers typed next, the one candidate source for forms the policy
never produces; it must keep only real next queries, most frequent first."""

from __future__ import annotations

import pytest

from minielm.feedback.events import FeedbackEvent
from minielm.rl.reformulations import mined_reformulations


def event(kind: str, query: str, typed_next: str | None = None, product: str | None = None) -> FeedbackEvent:
    return FeedbackEvent(
        event_type=kind,
        request_id=f"r-{query}-{typed_next}",
        query=query,
        product_id=product,
        position=None if product is None else 0,
        reformulated_query=typed_next,
        ts=1_700_000_000.0,
    )


def test_next_queries_are_grouped_per_normalised_query_most_frequent_first():
    events = [
        event("reformulation", "Telly  55 inch", "television 55 inch"),
        event("reformulation", "telly 55 inch", "tv stand"),
        event("reformulation", "telly 55 inch", "television  55 inch"),
        event("click", "telly 55 inch", product="p1"),
        event("reformulation", "telly 55 inch", "tv mount"),
    ]

    mined = mined_reformulations(events)

    assert mined == {"telly 55 inch": ["television 55 inch", "tv stand"]}


def test_reformulations_without_a_next_query_or_equal_to_the_query_are_skipped():
    events = [event("reformulation", "red shoes"), event("reformulation", "red shoes", "Red  Shoes")]

    assert mined_reformulations(events) == {}


def test_max_per_query_must_be_positive():
    with pytest.raises(ValueError, match="max_per_query"):
        mined_reformulations([], max_per_query=0)
