"""RL quality: relevant products per query (top k, held-out test split) of the distilled student and of the
RL-tuned student, over several RL seeds, with the mean lift, its 95% interval and the harm rate.

It starts from the REAL distilled student: the demo's own stages (synthetic catalog, tiny teacher rewriter
fine-tuned through the DeepSpeed core, distilled into the student with KD + token KL and its selective-
rewriting threshold) build it once into ``--build-dir`` (reused when already there).
RL (minielm.rl.trainer, ``--trainer``) trains on served traffic, i.e. train-split queries only
(minielm.feedback.simulator.served_queries), with the reward terms of minielm.rl.rewards: retrieval gain on
train-split labels and the intent-drift and degenerate penalties. No relevance student is built here, and
one greedy rewrite per served query gives the feedback term no spread within a group, so the judge and
feedback weights are 0 (the demo exercises both). Evaluation is on held-out test queries, never trained on,
next to raw and the phrase-table baseline, overall and on unseen noise. ``--data``/``--index``/``--student``
start instead from a student distilled on the rewriter-quality benchmark (``benchmarks/rewriter_quality.py
--save-data``), whose test split holds noise forms no train query shows.

Live traffic carries forms no training query showed; ``--traffic-share`` plays that: a share of the held-out
queries (a fixed draw, the same for every seed) is served as traffic and trained on, with the reward's
retrieval gain on their labels, and evaluation is on the rest of the held-out split only (every figure, raw and
baseline included). ``--reformulation-sessions N`` serves each traffic query N times with the distilled
student's rewrite to simulated shoppers (minielm.feedback.simulator, judged by catalog attributes); what the
unsatisfied ones typed next (minielm.rl.reformulations) joins that query's candidate group.

    nice -n 10 .venv/bin/python benchmarks/rl_quality.py --seeds 0 1 2            # DPO, the default trainer
    nice -n 10 .venv/bin/python benchmarks/rl_quality.py --trainer grpo --rl-lr 3e-4
    nice -n 10 .venv/bin/python benchmarks/rl_quality.py --data DATA --index INDEX --student STUDENT_DIR
    nice -n 10 .venv/bin/python benchmarks/rl_quality.py --data DATA --index INDEX --student STUDENT_DIR \
        --traffic-share 0.5 --reformulation-sessions 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from minielm.baseline import PhraseTableRewriter
from minielm.config import load_settings
from minielm.data.esci import load_esci
from minielm.features.keys import normalize_query
from minielm.feedback.events import ServedRewrite
from minielm.feedback.simulator import (
    AttributeShopperJudge,
    ShopperSimulator,
    intents_from,
    product_texts_from,
    served_queries,
)
from minielm.rl.policy import DirRewriter
from minielm.rl.reformulations import mined_reformulations
from minielm.rl.retraining import build_reward_model, heldout_metrics
from minielm.rl.trainer import train_policy
from minielm.search import SearchIndex

RESULTS = Path(__file__).resolve().parent / "results" / "rl_quality.json"


def build_distilled_student(build_dir: Path, seed: int) -> tuple[Path, Path, Path]:
    """(data dir, index dir, student dir): the demo's data, teacher and distillation stages at toy scale."""
    from minielm.data.esci import write_esci
    from minielm.data.synthetic import generate_dataset
    from minielm.demo.data_step import DEMO_PRODUCTS, DEMO_QUERIES
    from minielm.distill.stages import distill_rewriter_student
    from minielm.presets import toy_distill
    from minielm.teachers.config import tiny_rewriter_config
    from minielm.teachers.rewriter import train_rewriter_teacher

    data_dir, index_dir, student_dir = build_dir / "data", build_dir / "index", build_dir / "student" / "model"
    if (student_dir / "metadata.json").is_file():
        return data_dir, index_dir, student_dir
    settings = load_settings(environ={}, use_services_state=False, overrides=[f"seed={seed}"])
    data = generate_dataset(n_products=DEMO_PRODUCTS, n_queries=DEMO_QUERIES, seed=seed)
    write_esci(data, data_dir)
    SearchIndex.build(data.products).save(index_dir)
    teacher = train_rewriter_teacher(
        data_dir,
        build_dir / "teacher",
        tiny_rewriter_config(tiny=settings.teachers.rewriter.tiny),
        cache_dir=settings.teachers.models_cache_dir,
        index_dir=index_dir,
        top_k=settings.eval.top_k,
    )
    distill_rewriter_student(
        data_dir,
        teacher.model_dir,
        build_dir / "student",
        toy_distill(settings.distill),
        seed=seed,
        index_dir=index_dir,
        eval_config=settings.eval,
    )
    return data_dir, index_dir, student_dir


def student_under_test(args) -> tuple[Path, Path, Path]:
    """(data, index, student): the given distilled student, or the demo-scale one built into ``--build-dir``."""
    given = [args.data, args.index, args.student]
    if any(given) and not all(given):
        raise SystemExit("rl_quality: --data, --index and --student go together (a distilled student and its data)")
    if all(given):
        return args.data, args.index, args.student
    return build_distilled_student(Path(args.build_dir), args.build_seed)


def unseen(metrics: dict) -> float:
    """relevant@k on the held-out queries whose noise forms no train query shows (NaN when there are none)."""
    return metrics["by_novelty"].get("unseen", {}).get("relevant_per_query", float("nan"))


def rl_settings(seed: int, args):
    return load_settings(
        environ={},
        use_services_state=False,
        overrides=[
            f"seed={seed}",
            f"rl.trainer={args.trainer}",
            f"rl.max_steps={args.rl_steps}",
            f"rl.learning_rate={args.rl_lr}",
            f"rl.num_generations={args.group}",
            f"rl.queries_per_step={args.queries_per_step}",
            f"rl.beta={args.beta}",
            f"rl.temperature={args.temperature}",
            "rl.reward_weights.judge=0",
            "rl.reward_weights.feedback=0",
            f"rl.intent_embedder={args.embedder}",
        ],
    )


def heldout_traffic_ids(examples, split: str, share: float) -> set[str]:
    """Query ids of the held-out split served as live traffic: a fixed draw of ``share`` of them."""
    ids = sorted(set(examples.loc[examples["split"] == split, "query_id"].astype(str)))
    rng = np.random.default_rng(0)
    return set(rng.choice(ids, size=round(share * len(ids)), replace=False).tolist()) if share > 0 else set()


def simulated_reformulations(data, queries: list[str], rewrite, index, settings, sessions: int) -> list[list[str]]:
    """Per query: what simulated shoppers typed next after being served ``rewrite``'s results ``sessions`` times."""
    simulator = ShopperSimulator(
        AttributeShopperJudge(data.products, data.examples),
        product_texts_from(data.products),
        settings.feedback,
        seed=settings.seed,
        intents=intents_from(data.examples),
    )
    repeated = [q for q in queries for _ in range(sessions)]
    rewrites = rewrite(repeated)
    results = index.search(rewrites, settings.feedback.sim_top_k)
    served = [
        ServedRewrite(
            request_id=f"r{n}",
            query=query,
            rewrite=rewritten,
            model_name="distilled",
            model_version="0",
            product_ids=list(products),
            ts=1_700_000_000.0 + n,
        )
        for n, (query, rewritten, products) in enumerate(zip(repeated, rewrites, results))
    ]
    mined = mined_reformulations(e for outcome in simulator.react_batch(served) for e in outcome.events)
    return [mined.get(normalize_query(q), []) for q in queries]


def ci95(values: list[float]) -> list[float]:
    """Student-t 95% interval of the mean."""
    from scipy.stats import t

    if len(values) < 2:
        return [float("nan"), float("nan")]
    half = t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return [float(np.mean(values) - half), float(np.mean(values) + half)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="RL seeds")
    parser.add_argument("--build-dir", default=".minielm/runs/bench-rl/build", help="distilled student (built once)")
    parser.add_argument("--build-seed", type=int, default=0, help="seed of the data, teacher and student")
    parser.add_argument("--data", type=Path, help="ESCI dir of an already distilled student (with --index, --student)")
    parser.add_argument("--index", type=Path, help="search index dir of --data")
    parser.add_argument("--student", type=Path, help="saved distilled student dir (instead of building one)")
    parser.add_argument("--trainer", default="dpo", choices=["grpo", "dpo"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--rl-steps", type=int, default=60)
    parser.add_argument("--rl-lr", type=float, default=1e-4)
    parser.add_argument("--rl-queries", type=int, default=400, help="served train-split queries RL trains on")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--queries-per-step", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--temperature", type=float, default=1.5)
    parser.add_argument("--traffic-share", type=float, default=0.0, help="share of held-out queries served as traffic")
    parser.add_argument("--reformulation-sessions", type=int, default=0, help="shopper sessions per traffic query")
    parser.add_argument("--embedder", default="ngram_overlap", choices=["ngram_overlap", "minilm"])
    parser.add_argument("--workdir", default=".minielm/runs/bench-rl")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if not 0 <= args.traffic_share < 1:
        parser.error(f"--traffic-share: expected a share in [0, 1), got {args.traffic_share}")
    if args.reformulation_sessions < 0:
        parser.error(f"--reformulation-sessions: expected >= 0, got {args.reformulation_sessions}")
    torch.set_num_threads(args.threads)
    load_start, started = os.getloadavg(), time.perf_counter()
    data_dir, index_dir, student_dir = student_under_test(args)
    index = SearchIndex.load(index_dir)
    data = load_esci(data_dir)
    examples = data.examples
    base_settings = rl_settings(args.seeds[0], args)
    heldout_split = base_settings.rl.heldout_split
    traffic_ids = heldout_traffic_ids(examples, heldout_split, args.traffic_share)
    if traffic_ids:
        train = examples[examples["query_id"].astype(str).isin(traffic_ids)].drop_duplicates("query_id")
    else:
        train = examples[examples["query"].isin(set(served_queries(examples)))].drop_duplicates("query_id")
    distilled = DirRewriter(student_dir, base_settings.serving)
    before = heldout_metrics(
        base_settings,
        index,
        data_dir,
        {"raw": None, "baseline": PhraseTableRewriter.fit(data.products, examples), "distilled": distilled},
        exclude_query_ids=traffic_ids,
    )
    print(
        f"held-out {before['raw']['n_queries']} queries: "
        + ", ".join(f"{name} {before[name]['relevant_per_query']:.3f}" for name in before)
        + f" (unseen noise: {', '.join(f'{name} {unseen(before[name]):.3f}' for name in before)}; "
        f"distilled harm {before['distilled']['harm_rate']:.3f})",
        flush=True,
    )
    rows = []
    for seed in args.seeds:
        settings = rl_settings(seed, args)
        rewards = build_reward_model(settings, index, data_dir, None, heldout_split if traffic_ids else "train")
        if traffic_ids:
            rewards.relevant = {q: ids for q, ids in rewards.relevant.items() if q in traffic_ids}
        picked = train.sample(n=min(args.rl_queries, len(train)), random_state=seed)
        queries = picked["query"].tolist()
        reformulations = (
            simulated_reformulations(data, queries, distilled, index, settings, args.reformulation_sessions)
            if args.reformulation_sessions > 0
            else [[] for _ in queries]
        )
        out_dir = Path(args.workdir) / f"{args.trainer}-seed{seed}"
        seed_started = time.perf_counter()
        result = train_policy(
            student_dir,
            student_dir,
            queries,
            picked["query_id"].astype(str).tolist(),
            rewards,
            settings.rl,
            out_dir,
            seed=seed,
            served_rewrites=reformulations,
        )
        after = heldout_metrics(
            settings, index, data_dir, {"rl": DirRewriter(out_dir, settings.serving)}, exclude_query_ids=traffic_ids
        )
        summary = result.summary()
        row = {
            "seed": seed,
            "distilled": before["distilled"]["relevant_per_query"],
            "rl": after["rl"]["relevant_per_query"],
            "lift": after["rl"]["relevant_per_query"] / before["distilled"]["relevant_per_query"] - 1,
            "unseen_noise": {"distilled": unseen(before["distilled"]), "rl": unseen(after["rl"])},
            "kl_mean": summary["kl_mean"],
            "zero_spread_share": summary["zero_spread_share"],
            "traffic_queries": len(queries),
            "reformulated_share": float(np.mean([bool(r) for r in reformulations])),
            "harm_rate": {"distilled": before["distilled"]["harm_rate"], "rl": after["rl"]["harm_rate"]},
            "clean": {
                "distilled": before["distilled"]["by_noise"].get("clean"),
                "rl": after["rl"]["by_noise"].get("clean"),
            },
            "by_noise": {"distilled": before["distilled"]["by_noise"], "rl": after["rl"]["by_noise"]},
            "train": summary,
            "seconds": round(time.perf_counter() - seed_started, 1),
        }
        rows.append(row)
        print(
            f"seed {seed}: distilled {row['distilled']:.3f} -> RL {row['rl']:.3f} ({row['lift']:+.1%}), "
            f"KL {row['kl_mean']:.4f}, zero-spread {row['zero_spread_share']:.0%}, harm "
            f"{row['harm_rate']['distilled']:.3f} -> {row['harm_rate']['rl']:.3f} ({row['seconds']} s)",
            flush=True,
        )
        report = write_report(args, rows, before, load_start, started)
    print(
        f"mean lift {report['mean_lift']:+.2%}, 95% interval {report['ci95']}, "
        f"every seed > 0: {report['every_seed_positive']}; written to {args.out}"
    )


def write_report(args, rows: list[dict], before: dict, load_start, started: float) -> dict:
    """The JSON report over the seeds done so far, rewritten after every seed: a run cut short keeps them."""
    lifts = [r["lift"] for r in rows]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "args": {name: str(value) if isinstance(value, Path) else value for name, value in vars(args).items()},
        "heldout_queries": before["raw"]["n_queries"],
        "raw": before["raw"]["relevant_per_query"],
        "baseline": before["baseline"]["relevant_per_query"],
        "distilled": before["distilled"]["relevant_per_query"],
        "unseen_noise": {name: unseen(before[name]) for name in before},
        "seeds": rows,
        "mean_lift": float(np.mean(lifts)),
        "ci95": ci95(lifts),
        "every_seed_positive": all(v > 0 for v in lifts),
        "seeds_done": f"{len(rows)} of {len(args.seeds)}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
