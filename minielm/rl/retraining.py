"""The RL retraining stage as plain functions (the KFP components and the CLI call these).

prepare  : new feedback windows since the watermark -> training queries (or "nothing to do")
train    : GRPO from the production rewriter, KL to its reference (the distilled student)
evaluate : held-out relevant products per query (raw / production / candidate, per noise class),
           reward on a replay set, KL to the reference; the quality gate
rollout  : register the candidate, canary on replayed traffic (or the cluster's live split),
           promote to production or roll back; advance the watermark

A run that fails or is gated out never touches the production pointer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from minielm.config import Settings
from minielm.data.esci import QUERY, QUERY_ID, SPLIT, load_esci
from minielm.features.keys import normalize_query
from minielm.features.rewrite_cache import warm_after_promotion
from minielm.logs import get_logger
from minielm.registry import ModelRegistry
from minielm.rl import canary
from minielm.rl.errors import RLInputError
from minielm.rl.feedback import (
    advance_watermark,
    new_windows,
    observed_rewards,
    parse_window_key,
    read_feedback,
    read_watermark,
)
from minielm.rl.rewards import RewardModel, relevant_products
from minielm.rl.shopper import independent_shopper
from minielm.rl.similarity import make_similarity
from minielm.storage import ObjectStore

log = get_logger(__name__)

NOTHING_TO_DO = "nothing_to_do"
READY = "ready"
TRAIN_FILE = "train_queries.parquet"
FEEDBACK_FILE = "feedback.parquet"
PREPARED_FILE = "prepared.json"
REPLAY_QUERIES = 64


def _write_json(path: Path, value: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str))
    return value


def _queries_frame(data_dir: Path) -> pd.DataFrame:
    data = load_esci(data_dir)
    frame = data.queries()
    if SPLIT not in frame.columns:
        raise RLInputError(f"{data_dir}: the examples have no {SPLIT!r} column; RL needs train/held-out splits")
    return frame.assign(norm=frame[QUERY].map(normalize_query))


# -- prepare ----------------------------------------------------------------------------------------


def prepare_training_set(settings: Settings, store: ObjectStore, data_dir: Path, out_dir: Path) -> dict:
    """Read the windows past the watermark and build the training queries; too few new requests ->
    ``status: nothing_to_do`` (the watermark stays where it is)."""
    rl, out_dir = settings.rl, Path(out_dir)
    registry = ModelRegistry(store)
    refs = new_windows(store, read_watermark(store, rl.watermark_key), settings.feedback.windows_prefix)
    feedback = read_feedback(store, refs, registry, settings.models.student_rewriter)
    summary: dict[str, Any] = {
        "windows": [r.key for r in refs],
        "n_requests": int(len(feedback)),
        "min_new_requests": rl.min_new_requests,
    }
    if len(feedback) < rl.min_new_requests or len(feedback) == 0:
        summary.update(
            status=NOTHING_TO_DO,
            reason=f"{len(feedback)} new served requests in {len(refs)} windows "
            f"since the watermark; rl.min_new_requests={rl.min_new_requests}",
        )
        log.info("rl nothing to do", **summary)
        return _write_json(out_dir / PREPARED_FILE, summary)
    queries = _queries_frame(data_dir)
    held_out = set(queries.loc[queries[SPLIT] != "train", "norm"])
    train_ids = queries[queries[SPLIT] == "train"].drop_duplicates("norm").set_index("norm")[QUERY_ID]
    served = feedback.assign(norm=feedback["query"].map(normalize_query))
    alternatives = served_rewrites(served)
    served = served.drop_duplicates("norm")
    served = served[~served["norm"].isin(held_out)]
    rows = [
        {"query": q, "query_id": str(train_ids.get(n, "")), "source": "feedback", "served_rewrites": alternatives[n]}
        for q, n in zip(served["query"], served["norm"])
    ]
    seen = {normalize_query(r["query"]) for r in rows}
    labelled = queries[(queries[SPLIT] == "train") & ~queries["norm"].isin(seen)]
    labelled = labelled.sample(n=min(rl.labelled_queries_per_run, len(labelled)), random_state=settings.seed)
    rows += [
        {"query": q, "query_id": str(i), "source": "labelled", "served_rewrites": []}
        for q, i in zip(labelled[QUERY], labelled[QUERY_ID])
    ]
    train = pd.DataFrame(rows).head(rl.max_train_queries)
    out_dir.mkdir(parents=True, exist_ok=True)
    train.to_parquet(out_dir / TRAIN_FILE, index=False)
    feedback.to_parquet(out_dir / FEEDBACK_FILE, index=False)
    summary.update(
        status=READY,
        n_train_queries=int(len(train)),
        n_feedback_queries=int((train["source"] == "feedback").sum()),
        n_queries_with_served_alternatives=int((train["served_rewrites"].map(len) > 1).sum()),
        n_excluded_held_out=int(feedback["query"].map(normalize_query).isin(held_out).sum()),
    )
    log.info("rl training set built", **{k: v for k, v in summary.items() if k != "windows"})
    return _write_json(out_dir / PREPARED_FILE, summary)


def served_rewrites(feedback: pd.DataFrame) -> dict[str, list[str]]:
    """Per normalised query, the distinct rewrites it was served (greedy, and the exploration bucket's
    alternatives): the group members whose feedback tells rewrites of one query apart."""
    by_query: dict[str, dict[str, str]] = {}
    for norm, rewrite in zip(feedback["norm"], feedback["rewrite"].astype(str)):
        by_query.setdefault(norm, {}).setdefault(normalize_query(rewrite), rewrite)
    return {norm: list(texts.values()) for norm, texts in by_query.items()}


# -- shared loading ---------------------------------------------------------------------------------


def load_judge(settings: Settings, store: ObjectStore, judge_dir: str | Path | None, workdir: Path):
    """The relevance judge: a local cross-encoder dir, else the registry's production relevance student."""
    if settings.rl.reward_weights.judge == 0:
        return None
    from minielm.models.cross_encoder import CrossEncoderScorer

    if judge_dir:
        return CrossEncoderScorer.load(judge_dir)
    registry = ModelRegistry(store)
    entry = registry.stage(settings.models.student_relevance, "production")
    if entry is None:
        raise RLInputError(
            f"rl.reward_weights.judge > 0 but no judge: pass a judge dir or promote a "
            f"{settings.models.student_relevance!r} version to production"
        )
    return CrossEncoderScorer.load(registry.download(entry.name, entry.version, workdir / "judge"), entry.version)


def build_reward_model(
    settings: Settings, index, data_dir: Path, judge, labels_split: str, feedback: pd.DataFrame | None = None
) -> RewardModel:
    data = load_esci(data_dir)
    from minielm.data.text import product_text

    texts = dict(zip(data.products["product_id"].astype(str), product_text(data.products)))
    labelled = data.examples[data.examples[SPLIT] == labels_split]
    return RewardModel(
        config=settings.rl,
        index=index,
        product_texts=texts,
        similarity=make_similarity(settings.rl.intent_embedder),
        judge=judge,
        relevant=relevant_products(labelled, settings.eval.substitute_is_relevant),
        observed=observed_rewards(feedback) if feedback is not None else {},
        top_k=settings.eval.top_k,
    )


def _load_index(index_dir: Path):
    from minielm.search import SearchIndex

    return SearchIndex.load(index_dir)


# -- train ------------------------------------------------------------------------------------------


def require_production(settings: Settings, store: ObjectStore):
    """The production rewriter entry; a registry without one stops the run before anything is read."""
    name = settings.models.student_rewriter
    production = ModelRegistry(store).stage(name, "production")
    if production is None:
        raise RLInputError(
            f"the registry holds no production version of {name!r}: RL improves the production rewriter, "
            "so promote a distilled student that passed its gate first"
        )
    if is_baseline(production):
        raise RLInputError(
            f"production {name!r} {production.version} is the non-neural baseline rewriter: RL improves a learned "
            "rewriter, so distil a student that beats the baseline at its gate first"
        )
    return production


def is_baseline(entry) -> bool:
    """Whether a registry entry is the phrase-table baseline (served when no learned student passed its gate)."""
    from minielm.baseline import MODEL_CLASS

    return entry.metadata.get("model_class") == MODEL_CLASS


def fetch_production(settings: Settings, store: ObjectStore, out_dir: Path) -> dict:
    """Download the production rewriter and its KL reference (the distilled student it descends from)."""
    registry = ModelRegistry(store)
    name = settings.models.student_rewriter
    production = require_production(settings, store)
    reference_version = production.metadata.get("rl_reference_version") or production.version
    registry.download(name, production.version, out_dir / "production")
    registry.download(name, reference_version, out_dir / "reference")
    return {"production_version": production.version, "reference_version": reference_version}


def train_candidate(
    settings: Settings,
    store: ObjectStore,
    data_dir: Path,
    index_dir: Path,
    judge_dir: str | Path | None,
    prepared_dir: Path,
    out_dir: Path,
) -> dict:
    from minielm.rl.policy import carry_serving_options
    from minielm.rl.trainer import train_policy

    out_dir = Path(out_dir)
    versions = fetch_production(settings, store, out_dir)
    train = pd.read_parquet(Path(prepared_dir) / TRAIN_FILE)
    feedback = pd.read_parquet(Path(prepared_dir) / FEEDBACK_FILE)
    judge = load_judge(settings, store, judge_dir, out_dir)
    rewards = build_reward_model(settings, _load_index(index_dir), data_dir, judge, "train", feedback)
    result = train_policy(
        out_dir / "production",
        out_dir / "reference",
        train["query"].tolist(),
        [q or None for q in train["query_id"]],
        rewards,
        settings.rl,
        out_dir / "model",
        seed=settings.seed,
        served_rewrites=[list(texts) for texts in train["served_rewrites"]],
    )
    serving = carry_serving_options(out_dir / "production", out_dir / "model")  # the gate judges what will serve
    summary = {
        **versions,
        "trainer": settings.rl.trainer,
        "serving_options": serving,
        **result.summary(),
        "history": result.history,
    }
    return _write_json(out_dir / "train.json", summary)


# -- evaluate and gate --------------------------------------------------------------------------------


def _by_noise(examples: pd.DataFrame, per_query: list[dict]) -> dict[str, float]:
    if "noise" not in examples.columns:
        return {}
    noise = examples.drop_duplicates(QUERY_ID).set_index(QUERY_ID)["noise"].fillna("")
    frame = pd.DataFrame(per_query)
    frame["noise"] = frame["query_id"].map(lambda q: noise.get(q, "") or "clean")
    frame = frame.assign(noise=frame["noise"].str.split(",")).explode("noise")
    return frame.groupby("noise")["relevant"].mean().round(4).to_dict()


def heldout_metrics(
    settings: Settings, index, data_dir: Path, systems: dict[str, Any], exclude_query_ids: set[str] | None = None
) -> dict:
    """relevant@k etc. on the held-out split for each system (a batch rewrite function or None = raw), and its
    harm rate: the share of held-out queries where the system retrieves fewer relevant products than the raw
    query (a rewrite that hurts the shopper who typed it); ``by_novelty``: relevant@k on seen-noise, unseen-noise
    and clean queries; ``intent_harm_rate``: the share of clean and out-of-catalog held-out queries whose
    rewrite loses a content word (what the quality gate checks). ``exclude_query_ids``: held-out queries left
    out (those served as live traffic in an experiment, which evaluation must not see)."""
    from minielm.evaluation import evaluate_queries, harm_on_unchanged_queries, raw_queries, relevant_by_novelty

    examples = load_esci(data_dir).examples
    examples = examples[examples[SPLIT] == settings.rl.heldout_split]
    if exclude_query_ids:
        examples = examples[~examples["query_id"].astype(str).isin(exclude_query_ids)]
    raw = raw_queries(examples)
    ids = list(raw)

    def evaluate(texts: list[str]) -> dict:
        return evaluate_queries(
            index, examples, dict(zip(ids, texts)), settings.eval.top_k, settings.eval.substitute_is_relevant
        )

    baseline = [row["relevant"] for row in evaluate([raw[i] for i in ids])["per_query"]]
    report = {}
    for name, fn in systems.items():
        texts = [raw[i] for i in ids] if fn is None else fn([raw[i] for i in ids])
        result = evaluate(texts)
        harmed = [row["relevant"] < before for row, before in zip(result["per_query"], baseline)]
        intent_harm = harm_on_unchanged_queries(examples, dict(zip(ids, texts)))
        report[name] = {
            **{k: result[k] for k in ("relevant_per_query", "ndcg", "recall", "zero_result_rate", "n_queries")},
            "harm_rate": float(np.mean(harmed)) if harmed else 0.0,
            "intent_harm_rate": intent_harm["harm_rate"] if intent_harm else None,
            "by_noise": _by_noise(examples, result["per_query"]),
            "by_novelty": relevant_by_novelty(examples, result["per_query"]),
        }
    return report


def replay_queries(data_dir: Path, feedback: pd.DataFrame | None, limit: int = REPLAY_QUERIES) -> list[str]:
    """Traffic to replay: validation-split queries (never trained on), plus served held-out queries."""
    queries = _queries_frame(data_dir)
    replay = queries.loc[queries[SPLIT] == "validation", QUERY].drop_duplicates().tolist()[:limit]
    return replay or queries.loc[queries[SPLIT] != "train", QUERY].drop_duplicates().tolist()[:limit]


def evaluate_and_gate(
    settings: Settings,
    store: ObjectStore,
    data_dir: Path,
    index_dir: Path,
    judge_dir: str | Path | None,
    trained_dir: Path,
    out_dir: Path,
) -> dict:
    """Held-out metrics, replay reward and KL; then the quality gate (plus the KL ceiling and the
    per-noise-class tolerance)."""
    from transformers import AutoModelForCausalLM

    from minielm.baseline import PhraseTableRewriter
    from minielm.gate import quality_gate
    from minielm.models.tokenizer import ensure_pad_token, load_tokenizer
    from minielm.rl.policy import DirRewriter
    from minielm.rl.trainer import mean_token_kl

    trained_dir, out_dir = Path(trained_dir), Path(out_dir)
    index = _load_index(index_dir)
    max_new = settings.rl.max_new_tokens
    candidate = DirRewriter(trained_dir / "model", settings.serving)  # judged as served
    production = DirRewriter(trained_dir / "production", settings.serving)
    data = load_esci(data_dir)
    baseline = PhraseTableRewriter.fit(data.products, data.examples)
    metrics = heldout_metrics(
        settings,
        index,
        data_dir,
        {"raw": None, "baseline": baseline, "production": production, "candidate": candidate},
    )
    judge = load_judge(settings, store, judge_dir, out_dir)
    replay_rewards = build_reward_model(settings, index, data_dir, judge, "validation")
    replay = replay_queries(data_dir, None)
    reference = AutoModelForCausalLM.from_pretrained(str(trained_dir / "reference")).eval()
    policy = AutoModelForCausalLM.from_pretrained(str(trained_dir / "model"), dtype="float32").eval()  # served: int8
    cand_rewrites = candidate(replay)
    prompts = candidate.rewriter.lm_inputs(replay)
    tokenizer = ensure_pad_token(load_tokenizer(trained_dir / "model"))
    kl = mean_token_kl(policy, reference, tokenizer, prompts, cand_rewrites, max_new)
    replay_report = {
        "n_queries": len(replay),
        "candidate_reward": float(np.mean(replay_rewards.total(replay, cand_rewrites))),
        "production_reward": float(np.mean(replay_rewards.total(replay, production(replay)))),
        "kl_to_reference": kl,
    }
    gate = quality_gate(
        metrics["candidate"],
        metrics["raw"],
        metrics["production"],
        settings.gate,
        baseline=metrics["baseline"],
        harm_rate=metrics["candidate"]["intent_harm_rate"],
    )
    reasons = list(gate.reasons)
    passed = bool(gate.passed)
    if kl > settings.rl.max_kl:
        passed = False
        reasons.append(f"KL to the reference {kl:.4f} exceeds rl.max_kl={settings.rl.max_kl}")
    harm, harm_before = metrics["candidate"]["harm_rate"], metrics["production"]["harm_rate"]
    if harm > harm_before + settings.rl.max_harm_increase:
        passed = False
        reasons.append(
            f"harm rate {harm:.3f} > production {harm_before:.3f} + rl.max_harm_increase "
            f"{settings.rl.max_harm_increase}"
        )
    tolerance = settings.gate.max_regression_vs_production
    for noise, value in metrics["candidate"]["by_noise"].items():
        before = metrics["production"]["by_noise"].get(noise)
        if before is not None and value < before - tolerance:
            passed = False
            reasons.append(f"noise class {noise!r}: relevant@k {value:.3f} < production {before:.3f} - {tolerance}")
    report = {"heldout": metrics, "replay": replay_report, "gate": {"passed": passed, "reasons": reasons}}
    log.info(
        "rl candidate evaluated",
        passed=passed,
        reasons=reasons,
        candidate=metrics["candidate"]["relevant_per_query"],
        production=metrics["production"]["relevant_per_query"],
        raw=metrics["raw"]["relevant_per_query"],
        kl=kl,
    )
    return _write_json(out_dir / "evaluation.json", report)


# -- rollout ----------------------------------------------------------------------------------------


def register_candidate(
    settings: Settings,
    registry: ModelRegistry,
    trained_dir: Path,
    train_summary: dict,
    evaluation: dict,
    prepared: dict,
    run_id: str,
):
    """Register the tuned policy as a new version, with the production rewriter's intent guard and serving
    options carried over (from the production files the run downloaded), so it is never less safe."""
    from minielm.rl.policy import carry_serving_options

    trained_dir = Path(trained_dir)
    serving = carry_serving_options(trained_dir / "production", trained_dir / "model")
    metadata = {
        **serving,
        "parent_version": train_summary["production_version"],
        "rl_reference_version": train_summary["reference_version"],
        "pipeline_run": run_id,
        "metrics": evaluation["heldout"]["candidate"],
        "replay": evaluation["replay"],
        "feedback_windows": prepared["windows"],
        "trained_with": train_summary.get("trainer", settings.rl.trainer),
    }
    return registry.register(settings.models.student_rewriter, trained_dir / "model", metadata)


def rollout_candidate(
    settings: Settings,
    store: ObjectStore,
    data_dir: Path,
    index_dir: Path,
    trained_dir: Path,
    evaluation: dict,
    prepared: dict,
    run_id: str,
    out_dir: Path,
) -> dict:
    """Register a gated candidate, canary it, then promote or roll back; advance the watermark.
    The production pointer moves only on a passed gate AND a won canary."""
    from minielm.rl.policy import DirRewriter

    trained_dir, out_dir = Path(trained_dir), Path(out_dir)
    registry = ModelRegistry(store)
    name = settings.models.student_rewriter
    train_summary = json.loads((trained_dir / "train.json").read_text())
    outcome: dict[str, Any] = {"run_id": run_id, "production_before": train_summary["production_version"]}
    if not evaluation["gate"]["passed"]:
        outcome.update(status="gated", reasons=evaluation["gate"]["reasons"])
    else:
        entry = register_candidate(settings, registry, trained_dir, train_summary, evaluation, prepared, run_id)
        registry.promote(name, entry.version, "candidate", reason=f"rl run {run_id}")
        rl = settings.rl
        if rl.kserve_rollout:
            decision = canary.live_canary(settings, store, entry.version, train_summary["production_version"])
        else:
            shopper = independent_shopper(settings, load_esci(data_dir), _load_index(index_dir).search, store, out_dir)
            decision = canary.replay_canary(
                replay_queries(data_dir, None),
                DirRewriter(trained_dir / "model", settings.serving),
                DirRewriter(trained_dir / "production", settings.serving),
                shopper,
                rl.canary_traffic_percent,
                rl.canary_min_requests,
                rl.canary_alpha,
                seed=settings.seed,
            )
        outcome.update(candidate_version=entry.version, canary=decision.as_dict())
        if decision.promote:
            registry.promote(name, entry.version, "production", reason=f"rl canary won: {decision.reason}")
            outcome.update(status="promoted")
            if settings.rewrite_cache.enabled:
                outcome["rewrite_cache"] = warm_after_promotion(settings, entry.version)
        else:
            outcome.update(
                status="no_change" if decision.verdict == canary.NO_CHANGE else "rolled_back", reasons=[decision.reason]
            )
    advance_watermark(store, settings.rl.watermark_key, [parse_window_key(k) for k in prepared["windows"]], run_id)
    production = registry.stage(name, "production")
    outcome["production_after"] = production.version if production else None
    log.info("rl rollout finished", **{k: v for k, v in outcome.items() if k != "canary"})
    return _write_json(out_dir / "rollout.json", outcome)


def run_retraining(
    settings: Settings,
    store: ObjectStore,
    data_dir: Path,
    index_dir: Path,
    judge_dir: str | Path | None,
    workdir: Path,
    run_id: str | None = None,
) -> dict:
    """The whole stage in one process (the CLI and the demo); the pipeline runs the same steps as tasks."""
    run_id = run_id or time.strftime("rl-%Y%m%d-%H%M%S", time.gmtime())
    workdir = Path(workdir) / run_id
    started = time.monotonic()
    require_production(settings, store)
    prepared = prepare_training_set(settings, store, data_dir, workdir / "prepared")
    if prepared["status"] == NOTHING_TO_DO:
        return {"run_id": run_id, "status": NOTHING_TO_DO, "prepare": prepared}
    train = train_candidate(settings, store, data_dir, index_dir, judge_dir, workdir / "prepared", workdir / "trained")
    evaluation = evaluate_and_gate(
        settings, store, data_dir, index_dir, judge_dir, workdir / "trained", workdir / "evaluation"
    )
    rollout = rollout_candidate(
        settings,
        store,
        data_dir,
        index_dir,
        workdir / "trained",
        evaluation,
        prepared,
        run_id,
        workdir / "rollout",
    )
    return {
        "run_id": run_id,
        "status": rollout["status"],
        "prepare": prepared,
        "train": {k: v for k, v in train.items() if k != "history"},
        "evaluation": evaluation,
        "rollout": rollout,
        "seconds": round(time.monotonic() - started, 1),
    }
