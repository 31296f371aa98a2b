"""Rewriter quality on noise the models never saw: raw, baseline, teacher, student, oracle.

Generates the synthetic benchmark (or reads ``--data``), fits the phrase-table + spelling baseline
on its train split, and evaluates every system on the test split: relevant@k for seen and unseen
noise and per noise class, the harm rate on clean and out-of-catalog queries, and the safe share on
the real query strings of the ESCI sample. ``guarded_oracle`` and ``guarded_baseline`` serve the
oracle and the baseline behind the intent guard (built as the rewriter teacher builds it: catalog
texts, train canonical queries, synonyms from train pairs): the guarded oracle is the ceiling of any
guarded learned rewriter. ``oracle_except_lexicon`` is the oracle except on queries with a synonym,
abbreviation or unit noise, where the baseline's rewrite serves: the ceiling of a rewriter that learns no
lexicon form beyond the training pairs. Model directories come from the command line (missing
ones are reported as null), so the models can be filled in as they are trained:

    .venv/bin/python benchmarks/rewriter_quality.py                              # raw, baseline, oracle
    .venv/bin/python benchmarks/rewriter_quality.py --save-data /tmp/rq-data     # the data to train on
    .venv/bin/python benchmarks/rewriter_quality.py --data /tmp/rq-data --teacher T --student S --label-free L
    .venv/bin/python benchmarks/rewriter_quality.py --data /tmp/rq-data --teacher CASCADE --also lm_alone=T

``--type-resolver-min-similarity C`` adds ``baseline_type_resolver`` (the baseline followed by the
catalog product type resolver of :mod:`minielm.models.product_type_resolver`, firing at cosine C) and
gives every loaded cascade's front end the same resolver.

``--also NAME=DIR`` reports any other saved rewriter beside them (e.g. the LM alone next to a cascade
built on the baseline). Every system also gets ``changed_vs_baseline_share``: the share of test queries
whose served text differs from the baseline's (for a cascade: how often the learned part overrides it).

Train models on the same ``--save-data`` directory's train split, or the seen/unseen split is void.
Writes ``benchmarks/results/rewriter_quality.json`` and an HTML report beside it.
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

DEFAULT_OUT = REPO / "benchmarks" / "results" / "rewriter_quality.json"
DEFAULT_REAL_QUERIES = REPO / ".." / "shared" / "data" / "esci-sample"
SYSTEMS = ("raw", "baseline", "teacher", "student", "oracle")
GUARDED = ("guarded_oracle", "guarded_baseline")
# Noise classes whose forms come from a lexicon (a share of it reserved for the test split): no spelling rule
# recovers them, only a mapping learned from pairs that show them.
LEXICON_NOISE = frozenset({"synonym", "abbreviation", "unit_variant"})
CEILINGS = ("oracle_except_lexicon",)
# The targets, checked (never enforced) in the JSON: student vs raw and baseline on unseen noise.
TARGETS = {
    "student_gain_over_raw_unseen": 0.30,
    "student_gain_over_baseline_unseen": 0.05,
    "student_keeps_teacher_gain": 0.95,
    "harm_rate_synthetic_max": 0.02,
    "real_queries_safe_share_min": 0.95,
    "label_free_share_of_supervised_gain": 0.90,
}


def _relative(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference - 1.0


def _system_entry(report: dict, name: str, real: dict | None) -> dict:
    novelty = report["by_novelty"][name]
    harm = report["harm"][name]
    return {
        "relevant_at_k": {
            "all": report["systems"][name]["relevant_per_query"],
            "seen_noise": novelty.get("seen", {}).get("relevant_per_query"),
            "unseen_noise": novelty.get("unseen", {}).get("relevant_per_query"),
            "no_noise": novelty.get("none", {}).get("relevant_per_query"),
        },
        "ndcg": report["systems"][name]["ndcg"],
        "zero_result_rate": report["systems"][name]["zero_result_rate"],
        "by_noise": {k: v["relevant_per_query"] for k, v in report["by_noise"][name].items()},
        "harm_rate_synthetic": harm["harm_rate"] if harm else None,
        "harm_by_noise": {k: v["harm_rate"] for k, v in report["harm_by_noise"][name].items()},
        "real_queries_safe_share": real["safe_share"] if real else None,
        "real_queries_changed_share": real["changed_share"] if real else None,
    }


def guarded(guard, raw: dict[str, str], rewrites: dict[str, str]) -> dict[str, str]:
    """query id -> the rewrite where ``guard`` allows it, else the query as typed."""
    return {q: rewrites[q] if guard.allows(raw[q], rewrites[q]) else raw[q] for q in raw}


def oracle_except_lexicon(examples, oracle: dict[str, str], baseline: dict[str, str]) -> dict[str, str]:
    """query id -> the oracle rewrite, except the baseline's on queries whose noise includes a lexicon class: the
    ceiling of a rewriter perfect on every noise a rule or a seen pair can fix, and no better than the baseline on
    lexicon forms (on the test split, forms no training query shows)."""
    from minielm.evaluation import query_classes

    classes = query_classes(examples)
    return {q: baseline[q] if LEXICON_NOISE & set(classes[q]) else text for q, text in oracle.items()}


def _unseen(entry: dict | None) -> float | None:
    return entry["relevant_at_k"]["unseen_noise"] if entry else None


def _targets(systems: dict, label_free_share: float | None) -> dict:
    raw, baseline = _unseen(systems["raw"]), _unseen(systems["baseline"])
    student, teacher = systems.get("student"), systems.get("teacher")
    keeps = None
    if student and teacher and raw is not None and _unseen(teacher) - raw > 0:
        keeps = (_unseen(student) - raw) / (_unseen(teacher) - raw)
    return {
        "student_gain_over_raw_unseen": _relative(_unseen(student), raw),
        "student_gain_over_baseline_unseen": _relative(_unseen(student), baseline),
        "baseline_gain_over_raw_unseen": _relative(baseline, raw),
        "oracle_gain_over_raw_unseen": _relative(_unseen(systems["oracle"]), raw),
        "guarded_oracle_gain_over_baseline_unseen": _relative(_unseen(systems.get("guarded_oracle")), baseline),
        "oracle_except_lexicon_gain_over_baseline_unseen": _relative(
            _unseen(systems.get("oracle_except_lexicon")), baseline
        ),
        "student_keeps_teacher_gain": keeps,
        "label_free_share_of_supervised_gain": label_free_share,
        "targets": TARGETS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=6_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--split", default="test")
    parser.add_argument("--data", type=Path, help="evaluate this ESCI dir instead of generating the benchmark")
    parser.add_argument("--save-data", type=Path, help="write the generated benchmark here (to train models on)")
    parser.add_argument("--teacher", type=Path, help="saved teacher rewriter dir")
    parser.add_argument("--student", type=Path, help="saved student rewriter dir (the supervised run)")
    parser.add_argument("--label-free", type=Path, help="saved rewriter trained without canonical_query")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another saved rewriter to report beside the others (repeatable)",
    )
    parser.add_argument("--real-queries", type=Path, default=DEFAULT_REAL_QUERIES, help="ESCI sample dir")
    parser.add_argument(
        "--guard-semantic-threshold",
        type=float,
        help="RewriteGuard.semantic_threshold for the guarded systems and the loaded models' guards (default: off)",
    )
    parser.add_argument(
        "--guard-replace-known-words",
        action="store_true",
        help="RewriteGuard.replace_known_words with the semantic threshold (calibrate it: guard_calibration.py)",
    )
    parser.add_argument(
        "--type-resolver-min-similarity",
        type=float,
        help="add baseline_type_resolver and resolve product types in the loaded cascades' front ends at this "
        "cosine (calibrate it on validation; default: off)",
    )
    parser.add_argument(
        "--type-resolver-min-margin", type=float, default=0.0, help="the resolver's margin over the second type"
    )
    parser.add_argument(
        "--generation",
        choices=["served", "huggingface"],
        default="served",
        help="served: load each model as the server does (settings.serving: backend, runaway cap); huggingface: "
        "plain Hugging Face generation (figures recorded before this option)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    extra_models = {}
    for spec in args.also:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or name in (*SYSTEMS, *GUARDED, *CEILINGS, "label_free"):
            parser.error(
                f"--also: expected NAME=DIR with a NAME other than "
                f"{', '.join(SYSTEMS + GUARDED + CEILINGS)}, got {spec!r}"
            )
        extra_models[name] = Path(path)
    resolved_names = ("baseline_type_resolver",) if args.type_resolver_min_similarity is not None else ()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    load_start = os.getloadavg()
    started = time.perf_counter()

    from minielm.baseline import PhraseTableRewriter
    from minielm.config import load_settings
    from minielm.data.esci import SPLIT, load_esci, write_esci
    from minielm.data.synthetic import generate_dataset
    from minielm.eval_report import write_html_report
    from minielm.evaluation import (
        format_report_table,
        oracle_queries,
        quality_report,
        raw_queries,
        real_queries_safety,
        real_query_strings,
        rewrite_queries,
    )
    from minielm.models.loading import load_model_dir
    from minielm.models.product_type_resolver import ProductTypeResolver
    from minielm.models.rewrite_guard import RewriteGuard
    from minielm.search import SearchIndex
    from minielm.teachers.data import product_texts, rewrite_pairs

    if args.data:
        dataset = load_esci(args.data)
        data_source = {"data": str(args.data)}
    else:
        dataset = generate_dataset(args.products, args.queries, seed=args.seed, show_progress=True)
        data_source = {"generated": {"products": args.products, "queries": args.queries, "seed": args.seed}}
        if args.save_data:
            write_esci(dataset, args.save_data)
            data_source["saved_to"] = str(args.save_data)
    examples = dataset.examples[dataset.examples[SPLIT] == args.split]
    index = SearchIndex.build(dataset.products)
    baseline = PhraseTableRewriter.fit(dataset.products, dataset.examples)
    raw = raw_queries(examples)
    systems: dict = {"raw": raw, "baseline": rewrite_queries(baseline, raw), "oracle": oracle_queries(examples)}
    sources: dict = {"baseline": baseline}  # what the real query strings go through
    resolver = None
    if resolved_names:
        resolver = ProductTypeResolver.fit(
            dataset.products,
            min_similarity=args.type_resolver_min_similarity,
            min_margin=args.type_resolver_min_margin,
        )
        sources["baseline_type_resolver"] = PhraseTableRewriter(
            baseline.phrases, baseline.vocabulary, version="baseline+types", type_resolver=resolver
        )
        systems["baseline_type_resolver"] = rewrite_queries(sources["baseline_type_resolver"], raw)
    pairs = rewrite_pairs(dataset, "train")
    guard = RewriteGuard.from_texts(
        list(product_texts(dataset).values()) + [r for _, r in pairs],
        pairs,
        semantic_threshold=args.guard_semantic_threshold,
        replace_known_words=args.guard_replace_known_words,
    )
    systems["guarded_oracle"] = guarded(guard, raw, systems["oracle"])
    if "noise" in examples.columns:
        systems["oracle_except_lexicon"] = oracle_except_lexicon(examples, systems["oracle"], systems["baseline"])
    systems["guarded_baseline"] = guarded(guard, raw, systems["baseline"])
    sources["guarded_baseline"] = lambda queries: [
        q if guard.lost(q, r) else r for q, r in zip(queries, baseline(queries))
    ]
    serving = load_settings(environ={}, use_services_state=False).serving if args.generation == "served" else None
    models = {"teacher": args.teacher, "student": args.student, "label_free": args.label_free, **extra_models}
    for name, path in models.items():
        if path is not None:
            sources[name] = load_model_dir(path, "rewriter", serving)
            saved_guard = getattr(sources[name], "guard", None)
            if args.guard_semantic_threshold is not None and saved_guard is not None:
                sources[name].guard = RewriteGuard(
                    saved_guard.vocabulary,
                    saved_guard.equivalents,
                    semantic_threshold=args.guard_semantic_threshold,
                    catalog_word_sets=guard.catalog_word_sets,
                    replace_known_words=args.guard_replace_known_words,
                )
            if resolver is not None and getattr(sources[name], "front_end", None) is not None:
                sources[name].front_end.type_resolver = resolver
            systems[name] = rewrite_queries(sources[name], raw)
    changed_vs_baseline = {
        name: sum(texts[q] != systems["baseline"][q] for q in raw) / len(raw) for name, texts in systems.items()
    }
    report = quality_report(index, examples, systems, args.k)
    real_strings = real_query_strings(args.real_queries) if args.real_queries.is_dir() else []
    real = {}
    for name in systems:
        if name in ("oracle", "guarded_oracle", *CEILINGS) or not real_strings:
            continue
        real[name] = real_queries_safety(sources.get(name, lambda qs: list(qs)), real_strings)
    report["real_queries"] = real
    entries = {
        name: _system_entry(report, name, real.get(name)) if name in systems else None
        for name in SYSTEMS + GUARDED + CEILINGS
    }
    for name in ("label_free", *resolved_names, *extra_models):
        if name in systems:
            entries[name] = _system_entry(report, name, real.get(name))
    for name, entry in entries.items():
        if entry is not None:
            entry["changed_vs_baseline_share"] = changed_vs_baseline[name]
            if name in models:
                entry["front_end"] = "baseline" if getattr(sources[name], "front_end", None) is not None else "none"
    label_free_share = None
    if "label_free" in systems:
        supervised = entries["student"] or entries["teacher"]
        raw_unseen = _unseen(entries["raw"])
        if supervised and _unseen(supervised) - raw_unseen > 0:
            label_free_share = (_unseen(entries["label_free"]) - raw_unseen) / (_unseen(supervised) - raw_unseen)
    queries = examples.drop_duplicates("query_id")
    result = {
        "benchmark": "rewriter_quality",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        **data_source,
        "split": args.split,
        "k": args.k,
        "n_queries": len(queries),
        "n_queries_by_novelty": queries["noise_novelty"].value_counts().to_dict() if "noise_novelty" in queries else {},
        "n_real_queries": len(real_strings),
        "generation": (
            {"served": serving.generation_backend, "max_new_tokens_over_query": serving.max_new_tokens_over_query}
            if serving
            else "huggingface"
        ),
        "type_resolver": (
            {"min_similarity": resolver.min_similarity, "min_margin": resolver.min_margin} if resolver else None
        ),
        "guard": {
            "semantic_threshold": guard.semantic_threshold,
            "semantic_model": guard.semantic_model,
            "replace_known_words": guard.replace_known_words,
        },
        **entries,
        "harm_rate_synthetic": {n: e["harm_rate_synthetic"] if e else None for n, e in entries.items()},
        "real_queries_safe_share": {n: e["real_queries_safe_share"] if e else None for n, e in entries.items()},
        "label_free_share_of_supervised_gain": label_free_share,
        "summary": _targets(entries, label_free_share),
        "harmed_examples": {n: (real.get(n) or {}).get("harmed_examples", [])[:10] for n in systems if n in real},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    report.pop("per_query")
    report.update(command=result["command"], split=args.split, data=json.dumps(data_source))
    html = write_html_report(report, args.out.with_suffix(".html"))
    print(format_report_table(report))
    header = f"{'system':<11} {'seen@k':>8} {'unseen@k':>9} {'harm':>7} {'real safe':>10}"
    print(header)
    for name, entry in entries.items():
        if entry is None:
            print(f"{name:<11} {'null':>8}")
            continue
        at_k, harm, safe = entry["relevant_at_k"], entry["harm_rate_synthetic"], entry["real_queries_safe_share"]
        print(
            f"{name:<11} {at_k['seen_noise']:>8.3f} {at_k['unseen_noise']:>9.3f} "
            f"{'n/a' if harm is None else f'{harm:.1%}':>7} {'n/a' if safe is None else f'{safe:.1%}':>10}"
        )
    print(json.dumps(result["summary"], indent=2))
    print(f"written to {args.out} and {html}")


if __name__ == "__main__":
    main()
