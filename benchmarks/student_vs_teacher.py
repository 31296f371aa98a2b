"""CPU latency and throughput of the students against their teachers, both pairs in one run.

Rewriter: teacher decoder vs the distilled student shape (fewer, narrower layers, teacher-initialised),
greedy generation of exactly ``--new-tokens`` tokens (so both do the same amount of decoding).
Relevance: the LM relevance teacher (decoder + ESCI head) vs the cross-encoder student, scoring
(query, product text) pairs. Single-query latency p50/p99, batched latency p50/p99 and throughput.

Defaults measure the production shapes: SmolLM2-135M teachers (converted once from the GGUF in the
models cache) against a student decoder of ``--student-layers`` x ``--student-hidden`` and the
all-MiniLM-L6-v2 cross-encoder. ``--teacher-rewriter DIR`` etc. measure trained directories instead
(e.g. the demo's toy models). ``--quality REPORT.json`` (a ``minielm distill evaluate --output`` file
or the demo's distill_report.json) adds the held-out quality figures to the JSON.

    .venv/bin/python benchmarks/student_vs_teacher.py [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = [
    "wireles hedphones noise cancel",
    "blk leather office chair",
    "7qt instant pot",
    "bed side lamp wht",
    "mens running shoes sz 10",
    "stainles steel water botle",
    "kids lego set",
    "usb c charger 65w",
]
PRODUCT = "Acme Stainless Steel Water Bottle 32 oz, insulated, black. Keeps drinks cold for 24 hours."


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
    }


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def measure(fn_single, fn_batch, batch: int, repeats: int) -> dict:
    single = percentiles(timed(fn_single, repeats))
    batched_samples = timed(fn_batch, max(3, repeats // 3))
    batched = percentiles(batched_samples)
    return {
        "single": single,
        "batched": {**batched, "batch_size": batch},
        "throughput_per_s": round(batch / float(np.median(batched_samples)), 2),
    }


def rewriter_generate(rewriter, queries: list[str], new_tokens: int):
    inputs = rewriter._left_padded(queries)
    return rewriter.model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=rewriter.tokenizer.pad_token_id,
    )


def load_rewriters(args):
    from minielm.config import DistillConfig
    from minielm.distill.rewriter_student import build_student
    from minielm.models.backbones import smollm2_dir
    from minielm.models.rewriter import CausalRewriter

    if args.teacher_rewriter:
        teacher = CausalRewriter.load(args.teacher_rewriter)
    else:
        teacher = CausalRewriter.load(smollm2_dir(args.models_cache))
    if args.student_rewriter:
        student = CausalRewriter.load(args.student_rewriter)
    else:
        config = DistillConfig(rewriter={"num_layers": args.student_layers, "hidden_size": args.student_hidden})
        model, _ = build_student(teacher.model, config)
        student = CausalRewriter(model.eval(), teacher.tokenizer)
    return teacher, student


def load_scorers(args):
    from transformers import AutoModelForSequenceClassification

    from minielm.models.backbones import smollm2_dir
    from minielm.models.cross_encoder import CrossEncoderScorer
    from minielm.models.relevance_teacher import ESCI_CLASSES, RelevanceTeacher
    from minielm.models.tokenizer import load_tokenizer

    if args.teacher_relevance:
        teacher = RelevanceTeacher.load(args.teacher_relevance)
    else:
        path = smollm2_dir(args.models_cache)
        tokenizer = load_tokenizer(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=len(ESCI_CLASSES), pad_token_id=tokenizer.pad_token_id, dtype=torch.float32
        )
        teacher = RelevanceTeacher(model, tokenizer)
    student = (
        CrossEncoderScorer.load(args.student_relevance)
        if args.student_relevance
        else CrossEncoderScorer.from_backbone()
    )
    student.model.eval()
    return teacher, student


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def ratio(teacher: dict, student: dict) -> dict:
    return {
        "single_p50_speedup": round(teacher["single"]["p50_ms"] / student["single"]["p50_ms"], 2),
        "single_p99_speedup": round(teacher["single"]["p99_ms"] / student["single"]["p99_ms"], 2),
        "batched_p50_speedup": round(teacher["batched"]["p50_ms"] / student["batched"]["p50_ms"], 2),
        "throughput_ratio": round(student["throughput_per_s"] / teacher["throughput_per_s"], 2),
    }


def quality(path: Path | None) -> dict | None:
    if path is None:
        return None
    report = json.loads(Path(path).read_text())
    rewriter, relevance = report["rewriter"], report["relevance"]
    k = relevance["k"]
    return {
        "rewriter_relevant_per_query": {s: m["relevant_per_query"] for s, m in rewriter["systems"].items()},
        "student_keeps_teacher_gain": rewriter["student_keeps_teacher_gain"],
        "relevance": {
            s: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], f"ndcg@{k}": m[f"ndcg@{k}"]}
            for s, m in relevance["systems"].items()
        },
        "source": str(path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--student-layers", type=int, default=4)
    parser.add_argument("--student-hidden", type=int, default=256)
    parser.add_argument("--models-cache", default=".cache/models")
    parser.add_argument("--teacher-rewriter")
    parser.add_argument("--student-rewriter")
    parser.add_argument("--teacher-relevance")
    parser.add_argument("--student-relevance")
    parser.add_argument("--quality", type=Path)
    parser.add_argument("--label", default="production-shapes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "student_vs_teacher.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with torch.inference_mode():
        teacher_rw, student_rw = load_rewriters(args)
        batch_queries = (QUERIES * (args.batch // len(QUERIES) + 1))[: args.batch]
        rewriter = {}
        for name, model in (("teacher", teacher_rw), ("student", student_rw)):
            rewriter[name] = {
                "parameters": params(model.model),
                "layers": model.model.config.num_hidden_layers,
                "hidden_size": model.model.config.hidden_size,
                **measure(
                    lambda m=model: rewriter_generate(m, QUERIES[:1], args.new_tokens),
                    lambda m=model: rewriter_generate(m, batch_queries, args.new_tokens),
                    args.batch,
                    args.repeats,
                ),
            }
            print(f"rewriter {name}: {rewriter[name]}", flush=True)
        rewriter["speedup"] = ratio(rewriter["teacher"], rewriter["student"])
        del teacher_rw, student_rw

        teacher_rel, student_rel = load_scorers(args)
        pairs_q, pairs_p = batch_queries, [PRODUCT] * args.batch
        relevance = {}
        for name, scorer in (("teacher", teacher_rel), ("student", student_rel)):
            relevance[name] = {
                "parameters": params(scorer.model),
                **measure(
                    lambda s=scorer: s.predict_proba(pairs_q[:1], pairs_p[:1]),
                    lambda s=scorer: s.predict_proba(pairs_q, pairs_p),
                    args.batch,
                    args.repeats,
                ),
            }
            print(f"relevance {name}: {relevance[name]}", flush=True)
        relevance["speedup"] = ratio(relevance["teacher"], relevance["student"])

    result = {
        "benchmark": "student_vs_teacher",
        "label": args.label,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "command": " ".join(["benchmarks/student_vs_teacher.py", *sys.argv[1:]]),
        "rewriter": rewriter,
        "relevance": relevance,
        "quality": quality(args.quality),
        "targets": {"rewriter_speedup": 10, "rewriter_gain_share": 0.95, "relevance_speedup": 20},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"rewriter speedup {rewriter['speedup']}")
    print(f"relevance speedup {relevance['speedup']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
