"""Label-free rewriter training against supervised training, on the same synthetic data and budget.

Supervised: the teacher learns (noisy query -> ``canonical_query``) pairs. Label-free: the same data
with ``canonical_query`` and ``noise`` removed (and its validation split re-made by query); the teacher
learns only the pairs that retrieval verified (:mod:`minielm.teachers.label_free`), in rounds whose
steps add up to the supervised run's. Both are calibrated on their own validation split and served
with their intent guard; both are then scored on the *same* held-out test queries of the full data
(relevant products in the top k, harm on clean queries). The figure of merit:
``label_free_share_of_supervised_gain = (label_free - raw) / (supervised - raw)``.

    PYTHONPATH=. .venv/bin/python benchmarks/label_free_vs_supervised.py --data DIR --index DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="synthetic ESCI dir (with canonical_query)")
    parser.add_argument("--index", type=Path, required=True, help="its BM25 index dir")
    parser.add_argument("--out", type=Path, required=True, help="work dir for both runs (resumable)")
    parser.add_argument("--steps", type=int, default=600, help="supervised steps; label-free rounds share them")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--result", type=Path, default=ROOT / "benchmarks/results/label_free_vs_supervised.json")
    parser.add_argument(
        "--only",
        choices=("supervised", "label-free"),
        help="train just one side and stop (run both sides in parallel; a final run without --only resumes "
        "both finished runs and compares them)",
    )
    args = parser.parse_args()
    load_start = os.getloadavg()
    started = time.perf_counter()

    from minielm.data.esci import load_esci
    from minielm.models.rewriter import CausalRewriter
    from minielm.search import SearchIndex
    from minielm.teachers.config import TINY_TRAINING, tiny_rewriter_config
    from minielm.teachers.label_free import LabelFreeConfig, train_label_free_rewriter
    from minielm.teachers.rewriter import evaluate_rewriter, train_rewriter_teacher

    data = load_esci(args.data)
    training = TINY_TRAINING["rewriter"].model_copy(update={"max_steps": args.steps, "progress": False})
    config = tiny_rewriter_config(training=training, max_eval_queries=args.eval_queries)
    per_round = [args.steps // args.rounds] * args.rounds
    per_round[0] += args.steps - sum(per_round)
    if args.only != "label-free":
        supervised = train_rewriter_teacher(data, args.out / "supervised", config, index_dir=args.index, top_k=args.k)
    if args.only == "supervised":
        return
    label_free = train_label_free_rewriter(
        args.data,
        args.out / "label-free",
        config,
        LabelFreeConfig(top_k=args.k),
        rounds=args.rounds,
        index_dir=args.index,
        round_steps=per_round,
    )
    if args.only == "label-free":
        return

    index = SearchIndex.load(args.index)
    results = {}
    for name, model_dir in (("supervised", supervised.model_dir), ("label_free", label_free.model_dir)):
        rewriter = CausalRewriter.load(model_dir)
        metrics = evaluate_rewriter(rewriter, data, "test", args.eval_queries, args.k, index=index)
        results[name] = {
            "relevant_at_k": metrics["teacher_relevant_per_query"],
            "raw_relevant_at_k": metrics["raw_relevant_per_query"],
            "oracle_relevant_at_k": metrics.get("oracle_relevant_per_query"),
            "gain_over_raw": metrics["gain_over_raw"],
            "rewrite_rate": metrics["rewrite_rate"],
            "harm_rate_clean": metrics["harm_rate"],
            "harm_queries": metrics["harm_queries"],
            "min_confidence": rewriter.min_confidence,
            "examples": metrics["examples"],
            "harmed_examples": metrics["harmed_examples"],
        }
    supervised_gain = results["supervised"]["gain_over_raw"]
    share = results["label_free"]["gain_over_raw"] / supervised_gain if supervised_gain > 0 else None
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "k": args.k,
        "split": "test",
        "steps": args.steps,
        "label_free_round_steps": per_round,
        "label_free_rounds": label_free.metrics["label_free_rounds"],
        **results,
        "label_free_share_of_supervised_gain": share,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k not in ("supervised", "label_free")}, indent=2))
    for name in ("supervised", "label_free"):
        shown = {k: v for k, v in results[name].items() if k not in ("examples", "harmed_examples")}
        print(name, json.dumps(shown))


if __name__ == "__main__":
    main()
