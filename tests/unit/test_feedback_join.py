"""The join state machine of one partition pair, without servers: windows, grace, late and unmatched
events, the state a restart needs, and reproducing a cut that was written but not committed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from minielm.config import FeedbackConfig
from minielm.feedback.events import FeedbackEvent, ServedRewrite
from minielm.feedback.join import AggregatorError, PartitionJoin
from minielm.feedback.simulator import RateLimiter, ShopperSimulator, ubi_to_events
from minielm.feedback.windows import object_key, parse_key, read_metadata, reward

CONFIG = FeedbackConfig(window_s=1.0, grace_s=0.5, unmatched_after_s=10.0)


def served(rid: str, ts: float = 100.0, products=("p1", "p2")) -> ServedRewrite:
    return ServedRewrite(
        request_id=rid,
        query=f"q {rid}",
        rewrite="w",
        model_name="m",
        model_version="1",
        product_ids=list(products),
        ts=ts,
    )


def fb(rid: str, kind: str = "click", ts: float = 100.5) -> FeedbackEvent:
    product = None if kind == "reformulation" else "p1"
    return FeedbackEvent(
        event_type=kind,
        request_id=rid,
        query=f"q {rid}",
        product_id=product,
        position=None if product is None else 0,
        ts=ts,
    )


def new_join(**kwargs) -> PartitionJoin:
    return PartitionJoin(0, "rw", "fb", 0, 0, CONFIG, group_id="g", clock=lambda: 0.0, **kwargs)


def window_rows(cut) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(cut.objects[0][1]))


def test_window_joins_feedback_and_computes_reward_after_window_and_grace():
    join = new_join()
    join.add_rewrite(0, served("a"), now=0.0)
    join.add_rewrite(1, served("b"), now=0.2)
    join.add_feedback(0, fb("a", "click"))
    join.add_feedback(1, fb("a", "add_to_cart"))
    join.add_feedback(2, fb("b", "reformulation", ts=101.0))
    assert join.next_cut(now=0.5) is None  # still collecting
    assert join.next_cut(now=1.0) is None  # sealed, in grace
    cut = join.next_cut(now=1.6)
    assert cut is not None and (cut.rewrites_next, cut.feedback_next) == (2, 3)
    rows = window_rows(cut).set_index("request_id")
    assert rows.loc["a", "clicks"] == 1 and rows.loc["a", "add_to_carts"] == 1
    assert rows.loc["a", "reward"] == pytest.approx(reward(1, 1, 0, False, CONFIG))
    assert bool(rows.loc["b", "reformulated"]) and rows.loc["b", "reward"] == -CONFIG.reformulation_penalty
    assert parse_key(cut.objects[0][0]).first_offset == 0 and parse_key(cut.objects[0][0]).last_offset == 1
    assert read_metadata(cut.objects[0][1])["feedback_next"] == 3


def test_feedback_after_the_cut_is_late_and_unknown_requests_expire_as_unmatched():
    join = new_join()
    join.add_rewrite(0, served("a"), now=0.0)
    cut = join.next_cut(now=0.0) or join.next_cut(now=1.0) or join.next_cut(now=2.0)
    join.cut_done(cut)
    join.add_feedback(0, fb("a", "purchase", ts=101.0))  # its window is written: late
    join.add_feedback(1, fb("ghost", "click", ts=101.0))  # no such request (yet)
    join.add_feedback(2, fb("other", "click", ts=200.0))  # much later event time
    cut = join.next_cut(now=10.0)
    assert cut is not None and cut.window is None
    reasons = sorted((offset, reason) for offset, _, reason in cut.late)
    assert reasons == [(0, "late"), (1, "unmatched")]
    late_key = [key for key, _ in cut.objects if "/late/" in key or key.startswith(CONFIG.late_prefix)]
    assert late_key and parse_key(late_key[0]).first_offset == 0 and parse_key(late_key[0]).last_offset == 2
    state = pd.read_parquet(io.BytesIO(cut.objects[-1][1]))
    assert state["offset"].tolist() == [2]  # the event still waiting for its request


def test_state_object_restores_pending_feedback_after_a_restart():
    join = new_join()
    join.add_feedback(0, fb("a"))  # feedback before its served rewrite
    join.add_rewrite(0, served("x"), now=0.0)
    cut = join.next_cut(now=0.0) or join.next_cut(now=1.0) or join.next_cut(now=2.0)
    spilled = pd.read_parquet(io.BytesIO(cut.objects[-1][1]))
    assert spilled["offset"].tolist() == [0]
    restarted = PartitionJoin(
        0, "rw", "fb", cut.rewrites_next, cut.feedback_next, CONFIG, group_id="g", clock=lambda: 0.0
    )
    restarted.restore(
        [(int(o), FeedbackEvent.model_validate_json(j)) for o, j in zip(spilled["offset"], spilled["event_json"])]
    )
    restarted.add_rewrite(1, served("a"), now=5.0)
    cut = restarted.next_cut(5.0) or restarted.next_cut(6.0) or restarted.next_cut(7.0)
    assert window_rows(cut).set_index("request_id").loc["a", "clicks"] == 1


def test_a_written_but_uncommitted_cut_is_reproduced_exactly():
    original = new_join()
    events = [
        ("r", 0, served("a")),
        ("f", 0, fb("a")),
        ("r", 1, served("b")),
        ("f", 1, fb("b")),
        ("r", 2, served("c")),
        ("f", 2, fb("c")),
        ("f", 3, fb("a", "purchase")),
    ]
    for kind, offset, event in events[:4]:
        original.add_rewrite(offset, event, 0.0) if kind == "r" else original.add_feedback(offset, event)
    cut = original.next_cut(0.0) or original.next_cut(1.0) or original.next_cut(2.0)
    metadata = read_metadata(cut.objects[0][1])
    forced = {
        "key": cut.objects[0][0],
        "rewrites_first": 0,
        "rewrites_last": metadata["rewrites_last"],
        "feedback_next": metadata["feedback_next"],
        "first_request_id": metadata["first_request_id"],
    }
    replay = new_join(forced=forced)
    for kind, offset, event in events:  # the replay reads further than the cut before it can close
        replay.add_rewrite(offset, event, 50.0) if kind == "r" else replay.add_feedback(offset, event)
    again = replay.next_cut(50.0)
    assert again is not None and again.objects[0][0] == cut.objects[0][0]
    assert window_rows(again).equals(window_rows(cut))
    replay.cut_done(again)
    assert set(replay.open_requests) == {"c"} and replay.late[0][0] == 3  # deferred events processed after


def test_a_reset_broker_log_is_refused_instead_of_overwriting_windows():
    forced = {
        "key": object_key("w", "rw", 0, 0, 5),
        "rewrites_first": 0,
        "rewrites_last": 5,
        "feedback_next": 0,
        "first_request_id": "from-before",
    }
    join = new_join(forced=forced)
    with pytest.raises(AggregatorError, match="log was reset"):
        join.add_rewrite(0, served("someone-else"), 0.0)


def test_duplicate_request_id_is_reported_for_the_dead_letter_topic():
    join = new_join()
    assert join.add_rewrite(0, served("a"), 0.0) is None
    assert "duplicate" in join.add_rewrite(1, served("a"), 0.0)


class ThresholdJudge:
    """Stand-in judge for tests: products named 'good*' are relevant."""

    version = "test"

    def score(self, queries, texts):
        return np.array([1.0 if t.startswith("good") else 0.0 for t in texts])

    def predict_proba(self, queries, texts):
        raise NotImplementedError


def test_click_model_is_position_biased_relevance_driven_and_seeded():
    config = FeedbackConfig(reformulation_prob=1.0)
    texts = {f"good{i}": f"good {i}" for i in range(5)} | {f"bad{i}": f"bad {i}" for i in range(5)}

    def run(seed):
        sim = ShopperSimulator(ThresholdJudge(), texts, config, seed=seed)
        outcomes = []
        for i in range(400):
            products = [f"good{j}" for j in range(5)] if i % 2 else [f"bad{j}" for j in range(5)]
            outcomes.append(sim.react_batch([served(str(i), products=products)])[0])
        return outcomes

    outcomes = run(3)
    assert [e.model_dump() for o in outcomes for e in o.events] == [e.model_dump() for o in run(3) for e in o.events]
    good, bad = outcomes[1::2], outcomes[0::2]

    def clicks(group):
        return sum(e.event_type == "click" for o in group for e in o.events)

    assert clicks(good) > 5 * max(1, clicks(bad))
    by_rank = [
        sum(1 for o in good for e in o.events if e.event_type == "impression" and e.position == r) for r in range(5)
    ]
    assert by_rank[0] == 200 and by_rank[0] > by_rank[2] > by_rank[4]
    assert all(any(e.event_type == "reformulation" for e in o.events) for o in bad)
    assert not any(e.event_type == "reformulation" for o in good if o.satisfied for e in o.events)


def test_rate_limiter_spaces_calls():
    now = [0.0]
    limiter = RateLimiter(10.0, burst=1.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(21):
        limiter.acquire()
    assert now[0] == pytest.approx(2.0, abs=1e-3)


def test_ubi_replay_maps_real_behaviour_events(shared_dir):
    from minielm.data.esci import read_ubi_events

    queries, events = read_ubi_events(shared_dir / "data" / "esci-sample" / "ubi_queries_events.ndjson")
    served_events, feedback, skipped = ubi_to_events(queries, events, retime_to=2e9)
    assert len(served_events) > 200 and len(feedback) > 2000
    ids = {s.request_id for s in served_events}
    assert all(f.request_id in ids for f in feedback)
    assert {f.event_type for f in feedback} <= {"impression", "click", "add_to_cart", "purchase"}
    assert max(e.ts for e in served_events + feedback) == pytest.approx(2e9)
    assert skipped["action search"] > 0


def test_feedback_waits_while_it_runs_ahead_of_unread_requests_in_event_time():
    join = new_join()
    join.add_rewrite(0, served("a", ts=100.0), now=0.0)
    join.add_feedback(0, fb("a", ts=100.4))
    assert not join.feedback_ahead(rewrites_highwater=50)  # within grace_s of the requests read
    join.add_feedback(1, fb("z", ts=101.0))  # its request is further down the rewrites partition
    assert join.feedback_ahead(rewrites_highwater=50)
    assert not join.feedback_ahead(rewrites_highwater=1)  # every request read: nothing to wait for
    assert not join.feedback_ahead(rewrites_highwater=None)  # end of the partition unknown: never hold
    join.add_rewrite(1, served("z", ts=100.9), now=0.1)
    assert not join.feedback_ahead(rewrites_highwater=50)
    assert join.open_requests["z"] in join.joined_rows and not join.pending


def test_window_rows_count_each_feedback_type_per_request():
    join = new_join()
    join.add_rewrite(0, served("a"), now=0.0)
    join.add_rewrite(1, served("b", products=()), now=0.0)
    kinds = ["impression", "impression", "click", "add_to_cart", "purchase", "reformulation"]
    for offset, kind in enumerate(kinds):
        join.add_feedback(offset, fb("a", kind))
    join.add_feedback(len(kinds), fb("b", "impression"))
    cut = join.drain_cuts()
    rows = window_rows(cut).set_index("request_id")
    a, b = rows.loc["a"], rows.loc["b"]
    assert (a.impressions, a.clicks, a.add_to_carts, a.purchases, a.reformulated, a.feedback_events) == (
        2,
        1,
        1,
        1,
        True,
        6,
    )
    assert (b.impressions, b.clicks, b.reformulated, b.feedback_events, b.n_results) == (1, 0, False, 1, 0)
    expected = reward(1, 1, 1, True, CONFIG)
    assert a.reward == pytest.approx(expected) and b.reward == 0.0
    assert rows["query_key"].nunique() == 2


def cut_contents(cut) -> dict:
    """A cut's objects as comparable values (the state object's rows in offset order)."""
    out = {}
    for key, data in cut.objects:
        columns = pq.read_table(io.BytesIO(data)).to_pydict()
        if "/state/" in key:
            rows = sorted(zip(*columns.values()))
            columns = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
        out[key] = columns
    return out


def test_batches_join_exactly_as_one_event_at_a_time():
    """Random batches (feedback before and after its request, duplicates, late and unmatched events) give
    the same cuts, state and dead-letter reasons as the same events added one by one."""
    rng = np.random.default_rng(7)
    rewrites, feedback = [], []
    for i in range(240):
        rid = f"r{int(rng.integers(0, 220))}" if i % 37 == 0 else f"r{i}"  # a few duplicate request ids
        rewrites.append(served(rid, ts=100.0 + i * 0.01))
        for kind in rng.choice(["impression", "click", "add_to_cart", "reformulation"], size=int(rng.integers(0, 4))):
            feedback.append(fb(rid if rng.random() > 0.05 else f"ghost{i}", str(kind), ts=100.0 + i * 0.01))
    shuffled = sorted(range(len(feedback)), key=lambda j: j + int(rng.integers(-30, 30)))
    feedback = [feedback[j] for j in shuffled]

    def run(size: int, one_at_a_time: bool):
        join, cuts, problems, r, f, now = new_join(), [], [], 0, 0, 0.0
        while r < len(rewrites) or f < len(feedback):
            offsets, events = list(range(r, min(r + size, len(rewrites)))), rewrites[r : r + size]
            if one_at_a_time:
                problems += [(o, p) for o, e in zip(offsets, events) if (p := join.add_rewrite(o, e, now))]
            else:
                problems += [(offsets[i], p) for i, p in join.add_rewrites(offsets, events, now)]
            offsets, events = list(range(f, min(f + size, len(feedback)))), feedback[f : f + size]
            if one_at_a_time:
                for offset, event in zip(offsets, events):
                    join.add_feedback(offset, event)
            else:
                join.add_feedbacks(offsets, events)
            r, f, now = r + size, f + size, now + 0.3
            if (cut := join.next_cut(now)) is not None:
                cuts.append(cut_contents(cut))
                join.cut_done(cut)
        while (cut := join.drain_cuts()) is not None:
            cuts.append(cut_contents(cut))
            join.cut_done(cut)
        return cuts, problems

    for size in (9, 40):
        batched, single = run(size, one_at_a_time=False), run(size, one_at_a_time=True)
        assert len(single[0]) > 3 and single[1], "windows were cut and duplicates found"
        assert any("/late/" in key for cut in single[0] for key in cut), "late or unmatched events were written"
        assert batched == single


@pytest.mark.parametrize("layout", ["window", "late"])
def test_objects_built_from_columns_read_back_as_the_pandas_built_ones(layout):
    from minielm.feedback.windows import LATE_COLUMNS, WINDOW_COLUMNS, encode_columns, encode_frame

    if layout == "window":
        columns = {name: ["a", "é"] if dtype == "string" else [1, 2] for name, dtype in WINDOW_COLUMNS.items()}
        columns |= {"reformulated": [True, False], "ts": [100.5, 101.0], "reward": np.array([1.0, -2.0])}
        dtypes = WINDOW_COLUMNS
    else:
        columns = {name: ["click", None] if dtype == "string" else [3, None] for name, dtype in LATE_COLUMNS.items()}
        columns |= {"offset": [4, 5], "ts": [100.5, 101.0]}
        dtypes = LATE_COLUMNS
    direct = encode_columns(columns, dtypes, {"feedback_next": 3})
    through_pandas = encode_frame(pd.DataFrame(columns), dtypes, {"feedback_next": 3})
    assert pq.read_schema(io.BytesIO(direct)).equals(pq.read_schema(io.BytesIO(through_pandas)), check_metadata=True)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(direct)), pd.read_parquet(io.BytesIO(through_pandas)))
