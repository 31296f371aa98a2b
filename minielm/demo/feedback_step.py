"""The demo's feedback step: simulated shoppers -> Kafka -> aggregator -> reward windows on S3 + Feast features."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

DEMO_SESSIONS = 200
DEMO_TOP_K = 5  # products each simulated shopper looks at (judge calls = sessions x this)
DEMO_BATCH = 16


def _query_features(settings, queries: list[str]) -> list[dict]:
    from minielm.features.keys import query_key
    from minielm.features.repo import QUERY_STATS_VIEW, feature_store

    names = ["volume", "ctr", "add_to_cart_rate", "reformulation_rate"]
    values = (
        feature_store(settings)
        .get_online_features(
            features=[f"{QUERY_STATS_VIEW}:{n}" for n in names],
            entity_rows=[{"query_key": query_key(q)} for q in queries],
        )
        .to_dict()
    )
    return [{n: values[n][i] for n in names} for i in range(len(queries))]


def _ensure_feast(settings, echo) -> None:
    from minielm.features.repo import FEATURE_STORE_YAML, apply_repo, repo_dir

    if not (repo_dir(settings) / FEATURE_STORE_YAML).is_file():
        apply_repo(settings)
        echo(f"  applied the Feast repo at {repo_dir(settings)}")


def _predict_over_http(url: str, queries: list[str], model: str = "rewrite-search") -> list[dict]:
    """Send the queries to the running server; it logs one served rewrite per query to Kafka."""
    predictions: list[dict] = []
    for start in range(0, len(queries), DEMO_BATCH):
        body = json.dumps({"instances": [{"query": q} for q in queries[start : start + DEMO_BATCH]]}).encode()
        request = urllib.request.Request(
            f"{url.rstrip('/')}/v1/models/{model}:predict",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions += json.loads(response.read())["predictions"]
    return predictions


def _warm_head_cache(ctx, settings, windows, url: str) -> None:
    """Cache the production rewrites of the windows' head queries, then ask the server for them again: they
    come from the cache, without the model."""
    from minielm.features.rewrite_cache import RewriteCacheError, head_queries, warm_rewrite_cache

    try:
        report = warm_rewrite_cache(settings, windows=windows, progress=False)
    except RewriteCacheError as error:
        ctx.echo(f"  head-query cache not warmed: {error}")
        return
    head = head_queries(windows, settings.rewrite_cache.top_queries, settings.rewrite_cache.min_requests)
    rounds = [_predict_over_http(url, head["query"].tolist()) if len(head) else [] for _ in range(2)]
    first, second = (sum(bool(p.get("rewrite_cached")) for p in served) for served in rounds)
    ctx.echo(
        f"  head-query cache: {report['cached_queries']} queries with >= {settings.rewrite_cache.min_requests} "
        f"requests ({report['head_share_of_requests']:.0%} of the windows' requests) cached for version "
        f"{report['version']}; asked again, {first} of {len(head)} came from the cache and, asked once more, "
        f"{second} (a Feast read slower than feast.online_timeout_ms={settings.feast.online_timeout_ms:g} ms is a "
        "miss: the model answers, and the entry stays in the server's memory for the next request)"
    )


def _in_process_rewriter(rewriter_dir: Path | None, echo):
    from minielm.feedback.simulator import traffic_rewriter

    if rewriter_dir and Path(rewriter_dir).is_dir():
        echo(f"  rewriting in process with the student rewriter {rewriter_dir}")
        return traffic_rewriter(rewriter_dir, "student-rewriter")
    echo("  no student rewriter available: serving the raw queries")
    return traffic_rewriter(None)


def shopper_judge(settings, data, artifacts):
    """The simulated shoppers' judge (``feedback.shopper_judge``): independent of the relevance student that
    gives the RL reward."""
    from minielm.feedback.simulator import AttributeShopperJudge, TextShopperJudge, intents_from, product_texts_from

    if settings.feedback.shopper_judge == "attributes":
        return AttributeShopperJudge(data.products, data.examples)
    from minielm.models.relevance_teacher import RelevanceTeacher

    artifacts.require("teacher_relevance_dir", step="feedback (feedback.shopper_judge=relevance_teacher)")
    teacher = RelevanceTeacher.load(artifacts.teacher_relevance_dir)
    return TextShopperJudge(teacher, product_texts_from(data.products), intents_from(data.examples))


def feedback_demo_step(ctx) -> None:
    """Simulate a few hundred shopper sessions judged independently of the RL judge, aggregate them into reward
    windows on S3 and query statistics in Feast.

    Shoppers send train-split queries only (evaluation stays on held-out ones) and are judged by
    ``feedback.shopper_judge``, never by the RL reward judge. Needs ``dataset_dir`` and ``index_dir``
    (``teacher_relevance_dir`` for the teacher judge); uses ``serving_url`` when present (the server logs the
    served rewrites), else ``student_rewriter_dir`` in process. Produces ``feedback_window_keys`` (every
    window object on S3) for the RL step and ``feedback_summary``.
    """
    from minielm.data.esci import load_esci
    from minielm.feedback.aggregator import Aggregator
    from minielm.feedback.simulator import (
        EventSink,
        ShopperSimulator,
        drive_traffic,
        product_texts_from,
        respond_to_served,
        served_queries,
    )
    from minielm.feedback.windows import list_windows, read_windows, rewards_by_query
    from minielm.search import SearchIndex

    settings = ctx.settings.model_copy(deep=True)
    settings.feedback.sim_top_k = DEMO_TOP_K
    settings.feedback.sim_rate_per_s = 500.0
    settings.feedback.window_s, settings.feedback.grace_s = 2.0, 1.0
    ctx.artifacts.require("dataset_dir", "index_dir", step="feedback")
    data = load_esci(ctx.artifacts.dataset_dir)
    simulator = ShopperSimulator(
        shopper_judge(settings, data, ctx.artifacts),
        product_texts_from(data.products),
        settings.feedback,
        seed=settings.seed,
    )
    queries = served_queries(data.examples)
    _ensure_feast(settings, ctx.echo)

    serving_url = ctx.artifacts.serving_url
    if serving_url:
        picks = [simulator.rng.choice(queries) for _ in range(DEMO_SESSIONS)]
        sent = len(_predict_over_http(serving_url, picks))
        ctx.echo(f"  sent {sent} queries to {serving_url}; shoppers react to the served rewrites it logged")
        report = respond_to_served(
            settings,
            simulator,
            group_id=f"{settings.kafka.consumer_group}-shoppers",
            max_sessions=sent,
            until_idle_s=10.0,
        )
    else:
        rewrite, name, version = _in_process_rewriter(ctx.artifacts.student_rewriter_dir, ctx.echo)
        index = SearchIndex.load(ctx.artifacts.index_dir)
        sink = EventSink(settings)
        try:
            report = drive_traffic(
                settings, simulator, queries, rewrite, index.search, DEMO_SESSIONS, name, version, sink=sink
            )
        finally:
            sink.close()
    summary = report.summary()
    ctx.echo(
        f"  {summary['sessions']} shopper sessions on {len(queries)} train-split queries (none held out), judged "
        f"by {settings.feedback.shopper_judge} (not the RL judge): {summary['by_type']}, "
        f"satisfied {summary['satisfaction_rate']:.0%}"
    )

    watched = [q for q, _ in report.queries.most_common(3)] or queries[:3]
    before = _query_features(settings, watched)
    stats = Aggregator(settings).run(until_idle_s=4.0, max_seconds=120)
    ctx.echo(
        f"  aggregator: {stats.consumed} events consumed, {stats.windows_written} windows written, "
        f"{stats.dead_letters} dead letters, {stats.late_written} late, {stats.pushes} Feast pushes"
    )
    keys = list_windows(ctx.store, prefix=settings.feedback.windows_prefix)
    for key in stats.window_keys[:4]:
        ctx.echo(f"    s3://{ctx.store.bucket}/{key}")
    after = _query_features(settings, watched)
    for query, old, new in zip(watched, before, after):
        ctx.echo(
            f"  Feast query_stats for {query!r}: volume {old['volume']} -> {new['volume']}, "
            f"ctr {_fmt(old['ctr'])} -> {_fmt(new['ctr'])}, "
            f"reformulation_rate {_fmt(old['reformulation_rate'])} -> {_fmt(new['reformulation_rate'])}"
        )
    frame = read_windows(ctx.store, stats.window_keys)
    if len(frame):
        top = rewards_by_query(frame).sort_values("requests", ascending=False).head(3)
        for row in top.itertuples(index=False):
            ctx.echo(f"  reward {row.reward:+.2f} over {row.requests} requests for query key {row.query_key}")
    if serving_url:
        _warm_head_cache(ctx, settings, frame, serving_url)
    ctx.artifacts.feedback_window_keys = keys
    ctx.artifacts.feedback_summary = {
        **summary,
        "windows_written": stats.windows_written,
        "events_consumed": stats.consumed,
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"
