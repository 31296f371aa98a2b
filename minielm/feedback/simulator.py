"""Simulated shoppers (MiniELM's LLM-simulated feedback) and replay of real behaviour logs.

For a served request a shopper judge scores each returned product against what the shopper wants: by
default :class:`AttributeShopperJudge` (catalog attributes of the products the query was generated for),
or a relevance model (the teacher) through :class:`TextShopperJudge`, never the RL reward judge. A
position-biased click model turns the scores into impressions, clicks, add-to-carts and purchases; a
shopper who found nothing relevant reformulates. Everything is drawn from one seeded generator, so a run
is reproducible, and sending is rate-limited.

Three ways to use it:

- :meth:`ShopperSimulator.react` for one served request (used by the others and by tests);
- :func:`drive_traffic`: play both sides: rewrite queries, search, log the served rewrite, react;
- :func:`respond_to_served`: consume served rewrites that serving logged and react to each;
- :func:`replay_ubi`: send real User Behavior Insights events (the ESCI sample) as our events.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from minielm.config import FeedbackConfig, Settings
from minielm.data.esci import EsciData
from minielm.feedback.events import FeedbackEvent, ServedRewrite, message_key, parse_event
from minielm.kafka_io import make_consumer, make_producer
from minielm.logs import get_logger
from minielm.models.interfaces import RelevanceScorer

log = get_logger(__name__)

UBI_ACTIONS = {"impression", "click", "add_to_cart", "purchase"}


class RateLimiter:
    """Token bucket: ``acquire()`` blocks so that at most ``rate_per_s`` calls pass per second."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        self.rate = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s / 10)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()

    def acquire(self, n: float = 1.0) -> None:
        while True:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= n:
                self.tokens -= n
                return
            # at least a microsecond: a sub-ulp wait would never move a float clock forward
            self.sleep(max((n - self.tokens) / self.rate, 1e-6))


@dataclass
class SessionOutcome:
    """What one simulated shopper did with a result list."""

    events: list[FeedbackEvent]
    satisfied: bool
    scores: list[float]


INTENT_ATTRIBUTES = ("product_type", "product_brand", "product_color", "material", "size")


class AttributeShopperJudge:
    """A shopper who wants the products their query was generated for (its Exact-labelled set) and judges a
    shown product by its catalog attributes, not by reading text with a model: a product of another type
    scores 0, otherwise the share of the intent's attributes it has (those all intended products share).

    It shares no model with the RL reward judge (a cross-encoder), so RL cannot win by pleasing its own
    judge, and the shopper is never handed the oracle rewrite."""

    version = "attributes"

    def __init__(self, products: pd.DataFrame, examples: pd.DataFrame) -> None:
        missing = [c for c in ("product_id", *INTENT_ATTRIBUTES) if c not in products.columns]
        if missing:
            raise ValueError(f"AttributeShopperJudge: the products lack attribute columns {missing}")
        table = products.assign(product_id=products["product_id"].astype(str)).set_index("product_id")
        self.attributes: dict[str, tuple[str, ...]] = dict(
            zip(table.index, table[list(INTENT_ATTRIBUTES)].astype(str).itertuples(index=False, name=None))
        )
        exact = examples[examples["esci_label"] == "E"]
        self.intents: dict[str, dict[int, str]] = {}
        for query, ids in exact.groupby("query")["product_id"]:
            rows = [self.attributes[i] for i in ids.astype(str) if i in self.attributes]
            if rows:
                self.intents[str(query)] = {
                    slot: rows[0][slot] for slot in range(len(INTENT_ATTRIBUTES)) if len({r[slot] for r in rows}) == 1
                }

    def score_shown(self, queries: Sequence[str], product_ids: Sequence[str]) -> np.ndarray:
        scores = np.zeros(len(queries))
        for n, (query, product_id) in enumerate(zip(queries, product_ids)):
            intent, shown = self.intents.get(query), self.attributes.get(str(product_id))
            if not intent or shown is None or (0 in intent and shown[0] != intent[0]):
                continue  # an unknown query or product, or the wrong type of product
            scores[n] = sum(shown[slot] == value for slot, value in intent.items()) / len(intent)
        return scores


class TextShopperJudge:
    """A shopper judged by a relevance model (e.g. the relevance teacher) reading the intent and product texts."""

    def __init__(
        self, scorer: RelevanceScorer, product_texts: Mapping[str, str], intents: Mapping[str, str] | None = None
    ) -> None:
        self.scorer, self.product_texts, self.intents = scorer, product_texts, intents or {}

    def score_shown(self, queries: Sequence[str], product_ids: Sequence[str]) -> np.ndarray:
        if not queries:
            return np.zeros(0)
        texts = [self.product_texts.get(pid, pid) for pid in product_ids]
        return np.asarray(self.scorer.score([self.intents.get(q, q) for q in queries], texts), dtype=float)


class ShopperSimulator:
    """Position-biased shoppers judged by a relevance model.

    P(examine rank r) = 1 / (1 + r) ** examination_decay; an examined product is clicked with probability
    ``click_floor + (1 - click_floor) * score``; a click leads to an add-to-cart with probability
    ``add_to_cart_given_click * score`` and that to a purchase with ``purchase_given_cart``. A session
    without a click on a product scored at least ``satisfied_score`` is unsatisfied and reformulates with
    probability ``reformulation_prob``.
    """

    def __init__(
        self,
        judge: RelevanceScorer | AttributeShopperJudge | TextShopperJudge,
        product_texts: Mapping[str, str],
        config: FeedbackConfig,
        seed: int = 0,
        intents: Mapping[str, str] | None = None,
    ) -> None:
        """``judge``: a shopper judge (``score_shown``), or a relevance model that reads ``intents`` (query ->
        what the shopper means) and ``product_texts``."""
        self.judge = judge if hasattr(judge, "score_shown") else TextShopperJudge(judge, product_texts, intents)
        self.product_texts = product_texts
        self.config = config
        self.rng = random.Random(seed)
        self.intents = intents or {}

    @classmethod
    def for_dataset(cls, judge: RelevanceScorer, data: EsciData, config: FeedbackConfig, seed: int = 0):
        """Shoppers of an ESCI-layout dataset: its product texts, its canonical queries as their intents."""
        return cls(judge, product_texts_from(data.products), config, seed=seed, intents=intents_from(data.examples))

    def intent(self, query: str) -> str:
        """What the shopper really wants (the canonical query when known, else the typed query)."""
        return self.intents.get(query, query)

    def judge_scores(self, served: Sequence[ServedRewrite]) -> list[list[float]]:
        """Relevance in [0, 1] of each shown product to what the shopper wants, one judge call for the batch."""
        pairs = [(s.query, pid) for s in served for pid in s.product_ids[: self.config.sim_top_k]]
        flat = self.judge.score_shown([q for q, _ in pairs], [p for _, p in pairs]) if pairs else []
        scores, start = [], 0
        for s in served:
            n = len(s.product_ids[: self.config.sim_top_k])
            scores.append([min(1.0, max(0.0, float(x))) for x in flat[start : start + n]])
            start += n
        return scores

    def react(self, served: ServedRewrite, scores: Sequence[float]) -> SessionOutcome:
        """Draw one shopper's events for a served request whose shown products have these scores."""
        config, rng = self.config, self.rng
        events: list[FeedbackEvent] = []
        step = 0.0

        def emit(kind: str, product_id: str | None = None, position: int | None = None, **extra) -> None:
            nonlocal step
            step += 0.001 + rng.random() * 0.01
            events.append(
                FeedbackEvent(
                    event_type=kind,
                    request_id=served.request_id,
                    query=served.query,
                    product_id=product_id,
                    position=position,
                    ts=served.ts + step,
                    **extra,
                )
            )

        satisfied = False
        for rank, (product_id, score) in enumerate(zip(served.product_ids, scores)):
            if rng.random() >= 1.0 / (1.0 + rank) ** config.examination_decay:
                continue
            emit("impression", product_id, rank)
            if rng.random() >= config.click_floor + (1.0 - config.click_floor) * score:
                continue
            emit("click", product_id, rank)
            satisfied |= score >= config.satisfied_score
            if rng.random() < config.add_to_cart_given_click * score:
                emit("add_to_cart", product_id, rank)
                if rng.random() < config.purchase_given_cart:
                    emit("purchase", product_id, rank)
        if not satisfied and rng.random() < config.reformulation_prob:
            intent = self.intent(served.query)
            emit("reformulation", reformulated_query=intent if intent != served.query else None)
        return SessionOutcome(events, satisfied, list(scores))

    def react_batch(self, served: Sequence[ServedRewrite]) -> list[SessionOutcome]:
        return [self.react(s, scores) for s, scores in zip(served, self.judge_scores(served))]


@dataclass
class SimulationReport:
    sessions: int = 0
    served_events: int = 0
    feedback_events: int = 0
    by_type: Counter = field(default_factory=Counter)
    satisfied: int = 0
    zero_results: int = 0
    request_ids: list[str] = field(default_factory=list)
    queries: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "sessions": self.sessions,
            "served_events": self.served_events,
            "feedback_events": self.feedback_events,
            "by_type": dict(self.by_type),
            "satisfaction_rate": self.satisfied / self.sessions if self.sessions else 0.0,
            "zero_results": self.zero_results,
            "seconds": round(self.seconds, 3),
        }


class EventSink:
    """Sends events to the configured topics, keyed by request id (so rewrites and feedback co-partition)."""

    def __init__(self, settings: Settings, producer=None) -> None:
        self.topics = settings.kafka.topics
        self.producer = producer or make_producer(settings.kafka)
        self._own = producer is None

    def served(self, event: ServedRewrite) -> None:
        self.producer.send(self.topics.rewrites, key=message_key(event), value=event.to_bytes())

    def feedback(self, event: FeedbackEvent) -> None:
        self.producer.send(self.topics.feedback, key=message_key(event), value=event.to_bytes())

    def close(self) -> None:
        self.producer.flush()
        if self._own:
            self.producer.close()


def _record(report: SimulationReport, served: ServedRewrite, outcome: SessionOutcome, sink: EventSink) -> None:
    for event in outcome.events:
        sink.feedback(event)
        report.by_type[event.event_type] += 1
    report.sessions += 1
    report.feedback_events += len(outcome.events)
    report.satisfied += outcome.satisfied
    report.zero_results += not served.product_ids
    report.request_ids.append(served.request_id)
    report.queries[served.query] += 1


def traffic_rewriter(
    rewriter_dir: Path | str | None, model_name: str | None = None
) -> tuple[Callable[[list[str]], list[str]], str, str]:
    """(rewrite function, model name, model version) for :func:`drive_traffic`: the saved rewriter in
    ``rewriter_dir`` (named ``model_name`` or after its directory), or without one the raw query."""
    if rewriter_dir is None:
        return (lambda queries: list(queries)), "raw", "0"
    from minielm.models.rewriter import CausalRewriter  # torch: loaded only when a rewriter serves

    model = CausalRewriter.load(rewriter_dir)
    name = model_name or Path(rewriter_dir).name
    return (lambda queries: [row[0] for row in model.rewrite(list(queries))]), name, str(model.version)


def drive_traffic(
    settings: Settings,
    simulator: ShopperSimulator,
    queries: Sequence[str],
    rewrite: Callable[[list[str]], list[str]],
    search: Callable[[list[str], int], list[list[str]]],
    n_sessions: int,
    model_name: str,
    model_version: str,
    batch_size: int = 16,
    rate_per_s: float | None = None,
    sink: EventSink | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Play serving and shoppers: pick queries (seeded), rewrite, search, log the served rewrite, react."""
    if not queries:
        raise ValueError("drive_traffic: no queries to send")
    own_sink = sink is None
    sink = sink or EventSink(settings)
    limiter = RateLimiter(rate_per_s or settings.feedback.sim_rate_per_s)
    report = SimulationReport()
    started = time.perf_counter()
    try:
        while report.sessions < n_sessions:
            batch = [simulator.rng.choice(list(queries)) for _ in range(min(batch_size, n_sessions - report.sessions))]
            rewrites = rewrite(batch)
            results = search(rewrites, settings.feedback.sim_top_k)
            served = []
            for query, rewritten, product_ids in zip(batch, rewrites, results):
                limiter.acquire()
                event = ServedRewrite(
                    request_id=uuid.UUID(int=simulator.rng.getrandbits(128)).hex,
                    query=query,
                    rewrite=rewritten,
                    model_name=model_name,
                    model_version=model_version,
                    product_ids=list(product_ids),
                    ts=time.time(),
                )
                sink.served(event)
                report.served_events += 1
                served.append(event)
            for event, outcome in zip(served, simulator.react_batch(served)):
                _record(report, event, outcome, sink)
            if progress is not None:
                progress(len(batch))
    finally:
        if own_sink:
            sink.close()
        else:
            sink.producer.flush()
    report.seconds = time.perf_counter() - started
    log.info("simulated traffic", **report.summary())
    return report


def respond_to_served(
    settings: Settings,
    simulator: ShopperSimulator,
    group_id: str,
    max_sessions: int | None = None,
    until_idle_s: float = 5.0,
    sink: EventSink | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Consume the served rewrites that serving logged and send each one's simulated feedback."""
    consumer = make_consumer(settings.kafka, settings.kafka.topics.rewrites, group_id=group_id)
    own_sink = sink is None
    sink = sink or EventSink(settings)
    limiter = RateLimiter(settings.feedback.sim_rate_per_s)
    report = SimulationReport()
    started = last_seen = time.monotonic()
    try:
        while max_sessions is None or report.sessions < max_sessions:
            records = consumer.poll(timeout_ms=500)
            served = [
                e for batch in records.values() for r in batch if isinstance(e := parse_event(r.value), ServedRewrite)
            ]
            if max_sessions is not None:
                served = served[: max_sessions - report.sessions]
            if not served:
                if time.monotonic() - last_seen >= until_idle_s:
                    break
                continue
            last_seen = time.monotonic()
            for event, outcome in zip(served, simulator.react_batch(served)):
                limiter.acquire()
                _record(report, event, outcome, sink)
            sink.producer.flush()
            consumer.commit()
            if progress is not None:
                progress(len(served))
    finally:
        consumer.close(autocommit=False)
        if own_sink:
            sink.close()
    report.seconds = time.monotonic() - started
    log.info("responded to served rewrites", **report.summary())
    return report


# -- replay of real behaviour logs -------------------------------------------------------------------
def _epoch_seconds(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    return pd.Timestamp(value).timestamp()


def ubi_to_events(
    queries: pd.DataFrame, events: pd.DataFrame, retime_to: float | None = None
) -> tuple[list[ServedRewrite], list[FeedbackEvent], Counter]:
    """Map User Behavior Insights query/event logs onto served rewrites (rewrite = the query itself, as
    no rewriter ran) and feedback events. Returns the events, oldest first, and what was skipped why."""
    skipped: Counter = Counter()
    text: dict[str, str] = {}
    first_ts: dict[str, float] = {}
    hits: dict[str, list[str]] = {}
    for row in queries.itertuples(index=False):
        query = getattr(row, "user_query", None)
        if isinstance(query, str) and query.strip():
            text[row.query_id] = query
            first_ts[row.query_id] = _epoch_seconds(row.timestamp)
            ids = getattr(row, "query_response_hit_ids", None)
            if isinstance(ids, (list, np.ndarray)) and len(ids):
                hits[row.query_id] = [str(i) for i in ids]
    behaviour = []
    for row in events.itertuples(index=False):
        if row.action_name not in UBI_ACTIONS:
            skipped[f"action {row.action_name}"] += 1
            continue
        query_id = row.query_id if isinstance(row.query_id, str) else None
        query = text.get(query_id) if query_id else None
        if query is None and isinstance(row.user_query, str) and row.user_query.strip():
            query = text[query_id] = row.user_query
        if not query_id or query is None or not isinstance(row.object_id, str):
            skipped["no query id, query text or product"] += 1
            continue
        ts = _epoch_seconds(row.timestamp)
        first_ts[query_id] = min(first_ts.get(query_id, ts), ts)
        position = (
            None
            if row.position is None or (isinstance(row.position, float) and math.isnan(row.position))
            else int(row.position)
        )
        behaviour.append((ts, query_id, row.action_name, row.object_id, position))
    shown: dict[str, dict[str, int]] = {}
    for _, query_id, action, product_id, position in behaviour:
        if action == "impression":
            shown.setdefault(query_id, {}).setdefault(product_id, position if position is not None else 10**6)
    shift = 0.0
    all_ts = list(first_ts.values()) + [b[0] for b in behaviour]
    if retime_to is not None and all_ts:
        shift = retime_to - max(all_ts)
    served = []
    for query_id, query in text.items():
        product_ids = hits.get(query_id) or sorted(shown.get(query_id, {}), key=shown.get(query_id, {}).get)
        served.append(
            ServedRewrite(
                request_id=query_id,
                query=query,
                rewrite=query,
                model_name="ubi-replay",
                model_version="logged",
                product_ids=product_ids,
                ts=first_ts[query_id] + shift,
            )
        )
    feedback = [
        FeedbackEvent(
            event_type=action,
            request_id=query_id,
            query=text[query_id],
            product_id=product_id,
            position=position,
            ts=max(ts + shift, first_ts[query_id] + shift),
        )
        for ts, query_id, action, product_id, position in behaviour
    ]
    served.sort(key=lambda e: e.ts)
    feedback.sort(key=lambda e: e.ts)
    return served, feedback, skipped


def replay_ubi(
    settings: Settings,
    path: Path | str,
    rate_per_s: float | None = None,
    retime: bool = True,
    sink: EventSink | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Send the real UBI behaviour log (e.g. ``esci-sample/ubi_queries_events.ndjson``) to the topics."""
    from minielm.data.esci import read_ubi_events

    queries, events = read_ubi_events(path)
    served, feedback, skipped = ubi_to_events(queries, events, retime_to=time.time() if retime else None)
    own_sink = sink is None
    sink = sink or EventSink(settings)
    limiter = RateLimiter(rate_per_s) if rate_per_s else None
    by_request: dict[str, list[FeedbackEvent]] = {}
    for event in feedback:
        by_request.setdefault(event.request_id, []).append(event)
    sent = Counter()
    try:
        for event in served:
            if limiter:
                limiter.acquire()
            sink.served(event)
            sent["served_rewrite"] += 1
            for reaction in by_request.get(event.request_id, []):
                sink.feedback(reaction)
                sent[reaction.event_type] += 1
            if progress is not None:
                progress(1)
    finally:
        if own_sink:
            sink.close()
        else:
            sink.producer.flush()
    summary = {"sent": dict(sent), "skipped": dict(skipped), "requests": len(served)}
    log.info("replayed UBI events", **summary)
    return summary


def product_texts_from(products: pd.DataFrame) -> dict[str, str]:
    """product_id -> the text the judge sees (minielm.data.text.product_text)."""
    from minielm.data.text import product_text

    return dict(zip(products["product_id"].astype(str), product_text(products)))


def served_queries(examples: pd.DataFrame, evaluation_splits: Sequence[str] = ("validation", "test")) -> list[str]:
    """The queries simulated shoppers send: none from the evaluation splits (RL trains on served traffic and
    is judged on held-out queries, so served traffic must not contain them)."""
    if "split" not in examples.columns:
        raise ValueError("served_queries: the examples have no 'split' column to keep evaluation queries out")
    queries = sorted(set(examples.loc[~examples["split"].isin(evaluation_splits), "query"]))
    if not queries:
        raise ValueError(f"served_queries: every query is in an evaluation split {list(evaluation_splits)}")
    return queries


def intents_from(examples: pd.DataFrame) -> dict[str, str]:
    """noisy query -> canonical query, where the synthetic data knows it."""
    if "canonical_query" not in examples.columns:
        return {}
    pairs = examples[["query", "canonical_query"]].drop_duplicates("query")
    return dict(zip(pairs["query"], pairs["canonical_query"]))
