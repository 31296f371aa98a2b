"""Calibrate the intent guard's semantic threshold: correct rewrites it accepts vs harm it lets through.

For each threshold (``none`` = the rules alone), with and without ``replace_known_words``, on one
split (validation by default; never calibrate on test) of a saved synthetic benchmark
(``rewriter_quality.py --save-data``):

- the *guarded oracle*: the canonical rewrite served only when the guard allows it, else the query;
  its relevant@k on seen and unseen noise and the share of noisy queries whose oracle rewrite passes;
- *harm probes*, the worst case for the semantic check: in each clean or out-of-catalog query of the
  split and in each real ESCI query string, every content word is replaced by the catalog word nearest
  to it in the encoder's own space (not a spelling variant). A probe leaks when
  the guard allows it and the independent harm check (:mod:`minielm.intent`) calls it harm (the rules
  alone let some through: the ``none`` row is the reference). Reported
  per probe and per query (a query leaks when any of its probes does);
- the phrase-table baseline behind the guard: harm on clean/out-of-catalog queries and real safety.

The guard is built as the rewriter teacher builds it (catalog texts + train canonical queries, synonyms
from train pairs). Prints a table and writes JSON (command, cpus, load average at start and end):

    .venv/bin/python benchmarks/guard_calibration.py --data /tmp/rq/data --index /tmp/rq/index
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "benchmarks" / "results" / "guard_calibration.json"
DEFAULT_REAL_QUERIES = REPO / ".." / "shared" / "data" / "esci-sample"
DEFAULT_THRESHOLDS = "none,0.8,0.75,0.7,0.65,0.6,0.55,0.5,0.45,0.4,0.3"


def nearest_catalog_words(words: list[str], vocabulary: list[str], similarity) -> dict[str, str]:
    """word -> the catalog word nearest in the encoder's space that is not its spelling variant or stem-mate."""
    import numpy as np
    from rapidfuzz.distance import OSA

    from minielm.models.rewrite_guard import _stem

    similarity._encode(words + vocabulary)
    matrix = np.stack([similarity._vectors[w] for w in vocabulary])
    nearest = {}
    for word in words:
        scores = matrix @ similarity._vectors[word]
        for index in np.argsort(-scores)[:20]:
            candidate = vocabulary[int(index)]
            if _stem(candidate) != _stem(word) and OSA.distance(candidate, word, score_cutoff=2) > 2:
                nearest[word] = candidate
                break
    return nearest


def probes(queries: list[str], nearest: dict[str, str]) -> list[tuple[int, str, str]]:
    """(query index, query, probe) for each content word of each query, replaced by its nearest catalog word."""
    from minielm.models.rewrite_guard import content_mask, is_protected, words

    out = []
    for i, query in enumerate(queries):
        tokens = words(query)
        for j, (token, keep) in enumerate(zip(tokens, content_mask(tokens))):
            if keep and token.isalpha() and not is_protected(token) and token in nearest:
                out.append((i, query, " ".join(tokens[:j] + [nearest[token]] + tokens[j + 1 :])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="ESCI dir saved by rewriter_quality.py --save-data")
    parser.add_argument("--index", type=Path, help="saved search index of the same products (else built)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, help="comma-separated; 'none' = rules only")
    parser.add_argument("--real-queries", type=Path, default=DEFAULT_REAL_QUERIES, help="ESCI sample dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    load_start = os.getloadavg()
    started = time.perf_counter()

    import torch

    from minielm.baseline import PhraseTableRewriter
    from minielm.data.esci import SPLIT, load_esci
    from minielm.evaluation import (
        evaluate_queries,
        oracle_queries,
        query_classes,
        raw_queries,
        real_query_strings,
    )
    from minielm.intent import intent_check
    from minielm.models.phrase_similarity import shared_similarity
    from minielm.models.rewrite_guard import RewriteGuard
    from minielm.search import SearchIndex
    from minielm.teachers.data import product_texts, rewrite_pairs

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    dataset = load_esci(args.data)
    pairs = rewrite_pairs(dataset, "train")
    catalog_texts = list(product_texts(dataset).values()) + [r for _, r in pairs]
    rules = RewriteGuard.from_texts(catalog_texts, pairs)
    word_sets = RewriteGuard.from_texts(catalog_texts, semantic_threshold=1.0).catalog_word_sets
    examples = dataset.examples[dataset.examples[SPLIT] == args.split]
    index = SearchIndex.load(args.index) if args.index else SearchIndex.build(dataset.products)
    raw, oracle = raw_queries(examples), oracle_queries(examples)
    first = examples.drop_duplicates("query_id").set_index("query_id")
    novelty = {str(q): str(v) for q, v in first["noise_novelty"].items()}
    classes = query_classes(examples)
    leave_alone = [raw[q] for q, kinds in classes.items() if kinds[0] in ("clean", "out_of_catalog")]
    real = real_query_strings(args.real_queries) if args.real_queries.is_dir() else []
    baseline = PhraseTableRewriter.fit(dataset.products, dataset.examples)
    baseline_leave_alone = dict(zip(leave_alone, baseline(leave_alone)))
    baseline_real = dict(zip(real, baseline(real)))

    similarity = shared_similarity(None)
    vocabulary = sorted(w for w in rules.vocabulary if w.isalpha() and len(w) >= 3)
    probe_sets = {}
    for name, queries in (("leave_alone", leave_alone), ("real", real)):
        from minielm.models.rewrite_guard import words

        query_words = sorted({w for q in queries for w in words(q) if w.isalpha()})
        probe_sets[name] = probes(queries, nearest_catalog_words(query_words, vocabulary, similarity))
    harmful = {name: [intent_check(q, p).harmed for _, q, p in items] for name, items in probe_sets.items()}

    rows = []
    thresholds = [None if value.strip() == "none" else float(value) for value in args.thresholds.split(",")]
    for threshold, replace_known in [(t, r) for t in thresholds for r in (False, True) if t is not None or not r]:
        guard = RewriteGuard(
            rules.vocabulary,
            rules.equivalents,
            semantic_threshold=threshold,
            catalog_word_sets=word_sets if threshold is not None else None,
            replace_known_words=replace_known,
        )
        allowed = {q: guard.allows(raw[q], oracle[q]) for q in raw}
        guarded = {q: oracle[q] if allowed[q] else raw[q] for q in raw}
        per_query = evaluate_queries(index, examples, guarded, args.k)["per_query"]
        row: dict = {"semantic_threshold": threshold, "replace_known_words": replace_known}
        for group in ("unseen", "seen"):
            ids = [d for d in per_query if novelty[d["query_id"]] == group]
            row[f"guarded_oracle_{group}"] = sum(d["relevant"] for d in ids) / len(ids) if ids else None
            members = [q for q in raw if novelty[q] == group]
            row[f"oracle_allowed_{group}"] = sum(allowed[q] for q in members) / len(members) if members else None
        for name, items in probe_sets.items():
            leaks = [guard.allows(q, p) and bad for (_, q, p), bad in zip(items, harmful[name])]
            queries_leaking = {i for (i, _, _), leak in zip(items, leaks) if leak}
            n_queries = len(leave_alone if name == "leave_alone" else real)
            row[f"probe_leak_{name}"] = sum(leaks) / len(leaks) if leaks else 0.0
            row[f"probe_query_leak_{name}"] = len(queries_leaking) / n_queries if n_queries else 0.0
        for name, rewrites in (("leave_alone", baseline_leave_alone), ("real", baseline_real)):
            served = [r if guard.allows(q, r) else q for q, r in rewrites.items()]
            harmed = sum(intent_check(q, s).harmed for q, s in zip(rewrites, served))
            row[f"guarded_baseline_harm_{name}"] = harmed / len(rewrites) if rewrites else 0.0
        rows.append(row)
        print(json.dumps(row))

    result = {
        "benchmark": "guard_calibration",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "data": str(args.data),
        "split": args.split,
        "k": args.k,
        "n_queries_by_novelty": first["noise_novelty"].value_counts().to_dict(),
        "n_leave_alone_queries": len(leave_alone),
        "n_real_queries": len(real),
        "n_probes": {name: len(items) for name, items in probe_sets.items()},
        "n_harmful_probes": {name: sum(flags) for name, flags in harmful.items()},
        "unguarded_baseline_harm": {
            "leave_alone": sum(intent_check(q, r).harmed for q, r in baseline_leave_alone.items()) / len(leave_alone),
            "real": sum(intent_check(q, r).harmed for q, r in baseline_real.items()) / max(len(real), 1),
        },
        "probe_examples": {name: [p for _, _, p in items[:10]] for name, items in probe_sets.items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"{'threshold':>9} {'known':>5} {'unseen':>7} {'seen':>6} {'ok_uns':>7} {'leak_la':>8} {'leak_real':>9} "
        f"{'bl_real':>8}"
    )
    for row in rows:
        t = row["semantic_threshold"]
        print(
            f"{'none' if t is None else t:>9} {'yes' if row['replace_known_words'] else 'no':>5} "
            f"{row['guarded_oracle_unseen']:>7.3f} {row['guarded_oracle_seen']:>6.3f} "
            f"{row['oracle_allowed_unseen']:>7.1%} {row['probe_query_leak_leave_alone']:>8.1%} "
            f"{row['probe_query_leak_real']:>9.1%} {row['guarded_baseline_harm_real']:>8.1%}"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
