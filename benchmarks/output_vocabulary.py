"""A saved rewriter served with its whole vocabulary vs with its domain's output vocabulary (issue 20).

Both copies of one model are exported to CTranslate2 int8 as registration does; the trimmed one keeps the LM-head
rows of the tokens ``minielm.models.output_vocabulary.domain_token_ids`` finds in the dataset's train split
(queries, canonical rewrites) and catalog titles, as distillation records them. On queries the model never saw
(the test split and the real query strings of ``../shared/data/esci-sample/``) it reports:

- agreement: the greedy rewrites of the two copies, and what serving returns after the confidence threshold and
  the intent guard (``serve_choice``); the largest confidence change; the share of queries with a token outside
  the output vocabulary (the trimmed copy cannot write it back);
- generated tokens per query (EOS included), the distribution of what a request costs, with only
  ``max_new_tokens`` and with the runaway cap (``serving.max_new_tokens_over_query``), and the latency of
  single-query requests under each (interleaved, one run);
- CPU per query (single-query requests, interleaved, 1 and 2 threads), full over trimmed, on test-split and real
  ESCI-sample queries, in one run.

    python benchmarks/output_vocabulary.py --model DIR --data DIR --out benchmarks/results/output_vocabulary.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def domain_texts(data) -> list[str]:
    """What distillation passes as the rewriter's domain: train queries (and their canonical forms) and titles."""
    from minielm.data.esci import PRODUCT_TITLE
    from minielm.distill.stages import unlabelled_queries

    return [*unlabelled_queries(data), *data.products[PRODUCT_TITLE].astype(str)]


def eval_queries(data, sample_dir: Path, limit: int, real_limit: int = 0) -> dict[str, list[str]]:
    from minielm.data.esci import QUERY, load_esci_sample
    from minielm.teachers.data import split_examples

    test = list(dict.fromkeys(split_examples(data, "test", "evaluation")[QUERY].astype(str)))[:limit]
    sets = {"test_split": test}
    if sample_dir.is_dir() and real_limit:
        sets["esci_sample_real"] = list(dict.fromkeys(load_esci_sample(sample_dir).queryset))[:real_limit]
    return sets


def outside_share(tokenizer, texts: list[str], kept: set[int]) -> float:
    """Share of LM inputs with a token, written as a rewrite writes it, outside the output vocabulary."""
    from minielm.models.prompts import format_rewrite_answer

    ids = tokenizer([format_rewrite_answer(text) for text in texts], add_special_tokens=False)["input_ids"]
    return round(float(np.mean([any(i not in kept for i in row) for row in ids])), 4)


def generated_tokens(rewriter, queries: list[str]) -> list[int]:
    """Tokens each greedy generation produced (as served: with its token budget), the end token included when
    the model stopped on its own."""
    counts = []
    for start in range(0, len(queries), rewriter.batch_size):
        chunk = rewriter.lm_inputs(queries[start : start + rewriter.batch_size])
        for (tokens, _), budget in zip(rewriter._greedy_with_lowest_log_prob(chunk), rewriter.token_budgets(chunk)):
            counts.append(len(tokens) + 1 if len(tokens) < budget else len(tokens))
    return counts


def token_stats(counts: list[int], max_new_tokens: int) -> dict:
    counts = np.array(counts)
    return {
        "queries": len(counts),
        "mean": round(float(counts.mean()), 2),
        "p50": float(np.percentile(counts, 50)),
        "p90": float(np.percentile(counts, 90)),
        "p99": float(np.percentile(counts, 99)),
        "max": int(counts.max()),
        "hit_max_new_tokens_share": round(float(np.mean(counts >= max_new_tokens)), 4),
        "histogram": {int(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True))},
    }


def cpu_per_query(
    models: dict[str, object], queries: list[str], reps: int, batch: int = 1
) -> dict[str, dict[str, float]]:
    """Process CPU per query and wall time per call of rewrites ``batch`` queries at a time (as the server's batching
    window groups them), the models interleaved call by call."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in models}
    for _ in range(reps):
        for start in range(0, len(queries), batch):
            chunk = queries[start : start + batch]
            for name, model in models.items():
                wall, cpu = time.perf_counter(), time.process_time()
                model.rewrite_with_confidence(chunk)
                samples[name][0].append(time.perf_counter() - wall)
                samples[name][1].append((time.process_time() - cpu) / len(chunk))
    return {
        name: {
            "wall_p50_ms": round(1000 * float(np.median(wall)), 3),
            "wall_p99_ms": round(1000 * float(np.percentile(wall, 99)), 3),
            "cpu_mean_ms": round(1000 * float(np.mean(cpu)), 3),
        }
        for name, (wall, cpu) in samples.items()
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved CausalRewriter directory")
    parser.add_argument("--data", type=Path, required=True, help="the ESCI-format dataset it was trained on")
    parser.add_argument("--esci-sample", type=Path, default=REPO_ROOT / ".." / "shared" / "data" / "esci-sample")
    parser.add_argument("--test-queries", type=int, default=300, help="test-split queries compared")
    parser.add_argument("--real-queries", type=int, default=150, help="real ESCI-sample query strings compared")
    parser.add_argument(
        "--timing-queries", type=int, default=12, help="test-split and real queries each, timed one by one (0: skip)"
    )
    parser.add_argument("--timing-reps", type=int, default=2)
    parser.add_argument("--timing-batch", type=int, default=1, help="queries per timed call (the server's batches)")
    parser.add_argument(
        "--over-query",
        type=int,
        help="the runaway cap compared with none (default: the setting serving.max_new_tokens_over_query)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "output_vocabulary.json")
    args = parser.parse_args(argv)

    from benchmarks.report import machine_record, write_report
    from minielm.config import load_settings
    from minielm.models.ct2_rewriter import CTranslate2Rewriter, export_ctranslate2
    from minielm.models.output_vocabulary import (
        OUTPUT_VOCABULARY_FILE,
        domain_token_ids,
        save_output_vocabulary,
    )
    from minielm.models.tokenizer import load_tokenizer
    from minielm.teachers.data import load_teacher_data

    load_at_start = os.getloadavg()
    data = load_teacher_data(args.data)
    tokenizer = load_tokenizer(args.model)
    vocab_size = json.loads((args.model / "config.json").read_text())["vocab_size"]
    workdir = Path(tempfile.mkdtemp(prefix="minielm-bench-vocab-"))
    full_dir, trimmed_dir = workdir / "full", workdir / "trimmed"
    for target in (full_dir, trimmed_dir):
        shutil.copytree(args.model, target, ignore=shutil.ignore_patterns("ctranslate2*", OUTPUT_VOCABULARY_FILE))
    kept = domain_token_ids(tokenizer, domain_texts(data))
    save_output_vocabulary(trimmed_dir, kept, vocab_size)
    print(f"output vocabulary: {len(kept)} of {vocab_size} tokens")
    for target in (full_dir, trimmed_dir):
        export_ctranslate2(target)
    models = {
        name: CTranslate2Rewriter.load(d, threads=1) for name, d in (("full", full_dir), ("trimmed", trimmed_dir))
    }

    over_query = (
        args.over_query or load_settings(environ={}, use_services_state=False).serving.max_new_tokens_over_query
    )
    capped = CTranslate2Rewriter.load(trimmed_dir, threads=1, max_new_tokens_over_query=over_query)
    agreement = {}
    token_counts: list[int] = []
    capped_counts: list[int] = []
    all_queries: list[str] = []
    for set_name, queries in eval_queries(data, args.esci_sample, args.test_queries, args.real_queries).items():
        scored = {name: model.rewrite_with_confidence(queries) for name, model in models.items()}
        served = {
            name: [models[name].serve_choice(q, text, c) for q, (text, c) in zip(queries, scored[name])]
            for name in models
        }
        same_text = [a[0] == b[0] for a, b in zip(scored["full"], scored["trimmed"])]
        same_served = [a == b for a, b in zip(served["full"], served["trimmed"])]
        agreement[set_name] = {
            "queries": len(queries),
            "greedy_rewrite_agreement": round(float(np.mean(same_text)), 4),
            "served_agreement": round(float(np.mean(same_served)), 4),
            "inputs_with_tokens_outside_share": outside_share(
                tokenizer, models["trimmed"].lm_inputs(queries), set(kept)
            ),
            "max_confidence_change": round(max(abs(a[1] - b[1]) for a, b in zip(scored["full"], scored["trimmed"])), 5),
            "served_changed_by_rewrite": sum(not a[0] == b[0] for a, b in zip(scored["full"], scored["trimmed"])),
            "differences": [
                {"query": q, "full": a, "trimmed": b}
                for q, a, b, same in zip(queries, served["full"], served["trimmed"], same_served)
                if not same
            ][:20],
        }
        print(f"{set_name}: {agreement[set_name]}")
        token_counts += generated_tokens(models["trimmed"], queries)
        capped_counts += generated_tokens(capped, queries)
        all_queries += queries

    max_new = models["trimmed"].max_new_tokens
    tokens = {
        "max_new_tokens": max_new,
        "uncapped": token_stats(token_counts, max_new),
        f"over_query_{over_query}": token_stats(capped_counts, max_new),
        "queries_cut_by_the_cap": sum(a > b for a, b in zip(token_counts, capped_counts)),
        "cut_that_had_ended_on_their_own": sum(a > b and a < max_new for a, b in zip(token_counts, capped_counts)),
    }
    print(f"generated tokens per query: {tokens}")
    cap_latency = cpu_per_query({"uncapped": models["trimmed"], f"over_query_{over_query}": capped}, all_queries, 1)
    print(f"single-query latency, runaway cap vs none: {cap_latency}")

    timing = {}
    if args.timing_queries:
        samples = eval_queries(data, args.esci_sample, args.timing_queries, args.timing_queries)
        for threads in (1, 2):
            loaded = {
                name: CTranslate2Rewriter.load(d, threads=threads)
                for name, d in (("full", full_dir), ("trimmed", trimmed_dir))
            }
            for set_name, sample in samples.items():
                per = cpu_per_query(loaded, sample, args.timing_reps, args.timing_batch)
                per["inputs_with_tokens_outside_share"] = outside_share(
                    tokenizer, loaded["trimmed"].lm_inputs(sample), set(kept)
                )
                per["full_over_trimmed_cpu"] = round(per["full"]["cpu_mean_ms"] / per["trimmed"]["cpu_mean_ms"], 3)
                timing[f"threads={threads} {set_name}"] = per
                print(f"threads={threads} {set_name}: {per}")

    report = {
        "benchmark": "output_vocabulary",
        "command": "python benchmarks/output_vocabulary.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_record(load_at_start),
        "model": {
            "dir": str(args.model),
            "config": {
                k: json.loads((args.model / "config.json").read_text()).get(k)
                for k in ("num_hidden_layers", "hidden_size", "vocab_size", "tie_word_embeddings")
            },
        },
        "output_vocabulary_tokens": len(kept),
        "vocab_size": vocab_size,
        "agreement": agreement,
        "generated_tokens": tokens,
        "runaway_cap_latency": cap_latency,
        "cpu_per_query": timing,
        "timing_batch": args.timing_batch,
    }
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
