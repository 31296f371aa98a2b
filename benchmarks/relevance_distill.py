"""Relevance distillation (issue 16, the Walmart recipe): teacher vs baselines, a student trained
without gold labels, the augmentation scaling curve, and the student's speed against the teacher.

1. Data: the synthetic ESCI dataset (``--data DIR``, else generated with ``--products/--queries``).
2. Baselines on the held-out test pairs: majority class, and BM25 (ranking by the product's BM25
   score; classes from thresholds on the relative score fitted on the train split).
3. Teacher: ``--teacher-dir`` (a trained relevance teacher), else one is trained here on the train
   split's gold labels (``--teacher-backbone smollm2`` by default, ``--teacher-steps``...).
4. Scaling: a labelled set (the judged pairs of ``--labelled-queries`` train queries) plus
   m x (its pair count) augmented pairs from the other train queries, m in ``--scales``; everything
   labelled by the teacher only (soft labels at ``--temperature``); one fresh student per m, trained
   with Margin-MSE + KL for ``--epochs`` passes over its data. The largest m is "the student".
   ``--gold-mix-weight W`` adds one more run at the largest m that also learns the labelled set's
   gold labels, reported separately as ``student_gold_mix``. Each student's class probabilities on the
   test pairs are kept as ``WORK_DIR/student-M/test_probabilities.npy`` (rows in the test frame's order),
   so other ranking rules can be scored later without retraining.
5. Speed: teacher and student score the same 16-pair batches, alternating, in one process.

Writes ``benchmarks/results/relevance_distill.json`` and the curve as HTML next to it.

    PYTHONPATH=. nice .venv/bin/python benchmarks/relevance_distill.py --threads 2 \\
        [--teacher-dir runs/teacher-relevance/final] [--scales 0,1,4,16]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minielm.config import DistillConfig, RelevanceStudentConfig  # noqa: E402
from minielm.data.esci import load_esci, write_esci  # noqa: E402
from minielm.data.synthetic import generate_dataset  # noqa: E402
from minielm.distill.augment import build_triples, label_triples  # noqa: E402
from minielm.distill.relevance_label_cache import CachedTeacher, cache_path  # noqa: E402
from minielm.distill.relevance_report import write_scaling_report  # noqa: E402
from minielm.distill.relevance_scaling import (  # noqa: E402
    labelled_set_triples,
    nested_augmented_sets,
    pairs_in,
    run_scaling,
)
from minielm.distill.relevance_student import distill_relevance  # noqa: E402
from minielm.distill.stages import unlabelled_queries  # noqa: E402
from minielm.models.cross_encoder import CrossEncoderScorer  # noqa: E402
from minielm.models.relevance_score import expected_gain  # noqa: E402
from minielm.models.relevance_teacher import RelevanceTeacher  # noqa: E402
from minielm.search import SearchIndex  # noqa: E402
from minielm.teachers.data import product_texts, relevance_frame  # noqa: E402
from minielm.teachers.metrics import paired_difference, per_query_ndcg, relevance_metrics  # noqa: E402
from minielm.teachers.relevance_baselines import baseline_metrics  # noqa: E402

K = 10
PARTS = {"teacher", "labels", "scaling", "speed"}
RESULTS = ROOT / "benchmarks" / "results"


def layer_list(text: str) -> list[int]:
    """``0,11`` -> [0, 11] (checked by the student config)."""
    try:
        return RelevanceStudentConfig(teacher_layers=[int(i) for i in text.split(",")]).teacher_layers
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected ascending layer indices like 0,11: {error}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/relevance_distill_bench"))
    p.add_argument("--data", type=Path, help="ESCI-layout dataset dir (default: generate one)")
    p.add_argument("--products", type=int, default=2000)
    p.add_argument("--queries", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-pairs", type=int, default=2000, help="held-out pairs (whole queries) to evaluate on")
    p.add_argument("--teacher-dir", type=Path, help="a trained relevance teacher (export dir)")
    p.add_argument("--teacher-backbone", choices=["smollm2", "tiny"], default="smollm2")
    p.add_argument("--teacher-steps", type=int, default=200)
    p.add_argument("--teacher-batch", type=int, default=8)
    p.add_argument("--teacher-lr", type=float, default=1e-4)
    p.add_argument("--teacher-max-length", type=int, default=48)
    p.add_argument("--teacher-layers", type=int, default=0, help="keep the backbone's first N layers (0: all)")
    p.add_argument(
        "--teacher-trainable-layers", type=int, default=0, help="train only the top N layers and the head (0: all)"
    )
    p.add_argument("--labelled-queries", type=int, default=16, help="train queries whose judged pairs form the set")
    p.add_argument("--scales", default="0,1,4,16", help="augmented pairs as multiples of the labelled pairs")
    p.add_argument("--triples-per-query", type=int, default=16)
    p.add_argument(
        "--triple-sources",
        default="retrieved=0.5,same_category=0.3,random=0.2",
        help="where an augmented triple's second product comes from (BM25-retrieved hard pairs, same category, random)",
    )
    p.add_argument("--label-cache", type=Path, help="dir of the teacher's cached pair logits (default WORK_DIR/cache)")
    p.add_argument("--temperature", type=float, default=1.0, help="teacher soft labels: softmax(logits / T)")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over each student's training triples")
    p.add_argument("--student-backbone", type=Path, help="encoder dir (default all-MiniLM-L6-v2 from its wheel)")
    p.add_argument("--student-layers", type=int, default=None, help="keep the first N encoder layers")
    p.add_argument(
        "--student-teacher-layers",
        type=layer_list,
        default=None,
        help="start the student from the teacher: keep these of its decoder layers, e.g. 0,11 (default: the backbone)",
    )
    p.add_argument("--student-max-length", type=int, default=64)
    p.add_argument("--student-batch", type=int, default=16, help="triples per step")
    p.add_argument("--student-lr", type=float, default=5e-5)
    p.add_argument("--soft-label-weight", type=float, default=0.5)
    defaults = RelevanceStudentConfig()
    p.add_argument(
        "--list-size", type=int, default=defaults.list_size, help="0: triples; N >= 2: groups of one query's products"
    )
    p.add_argument(
        "--listwise-weight", type=float, default=defaults.listwise_weight, help="with --list-size: listwise KL weight"
    )
    p.add_argument(
        "--listwise-temperature",
        type=float,
        default=defaults.listwise_temperature,
        help="with --list-size: softmax temperature",
    )
    p.add_argument("--gold-mix-weight", type=float, default=0.0, help="> 0: one extra run that also sees gold labels")
    p.add_argument("--speed-batches", type=int, default=5, help="16-pair batches timed per model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parts", default="teacher,scaling,speed", help=f"subset of {sorted(PARTS)} (baselines always)")
    p.add_argument("--out", type=Path, default=RESULTS / "relevance_distill.json")
    return p.parse_args(argv)


def dataset(args):
    if args.data:
        return load_esci(args.data), args.data
    out = args.work_dir / "data"
    if not out.is_dir():
        write_esci(generate_dataset(args.products, args.queries, seed=args.seed), out)
    return load_esci(out), out


def train_teacher(args, data_dir: Path) -> Path:
    from minielm.teachers.config import RelevanceTeacherConfig
    from minielm.teachers.relevance import train_relevance_teacher
    from minielm.training.config import TrainingConfig

    config = RelevanceTeacherConfig(
        backbone=args.teacher_backbone,
        max_length=args.teacher_max_length,
        backbone_layers=args.teacher_layers,
        eval_split="validation",  # the trainer's own check; the benchmark scores the test split once, below
        max_eval_examples=200,
        training=TrainingConfig(
            max_steps=args.teacher_steps,
            micro_batch_size=args.teacher_batch,
            learning_rate=args.teacher_lr,
            warmup_steps=max(1, args.teacher_steps // 15),
            checkpoint_every=max(50, args.teacher_steps // 2),
            cpu_threads=args.threads,
            seed=args.seed,
            trainable_top_layers=args.teacher_trainable_layers or None,
        ),
    )
    run = train_relevance_teacher(data_dir, args.work_dir / "teacher", config)
    return run.model_dir


def teacher_test_logits(
    teacher: RelevanceTeacher, teacher_dir: Path, test: pd.DataFrame, cache_dir: Path
) -> np.ndarray:
    """The teacher's logits on the test pairs, cached per teacher (dir and weights' mtime) and test selection."""
    weights = max(Path(teacher_dir).glob("*.safetensors"), default=Path(teacher_dir))
    key = hashlib.sha1(
        repr(
            (
                str(Path(teacher_dir).resolve()),
                weights.stat().st_mtime,
                test["product_id"].tolist(),
                list(test["query"]),
            )
        ).encode()
    ).hexdigest()[:16]
    cache = cache_dir / f"teacher_logits_{key}.npy"
    if cache.is_file():
        return np.load(cache)
    logits = teacher.logits(test["query"].tolist(), test["product_text"].tolist())
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, logits)
    return logits


def speed(teacher: RelevanceTeacher, student: CrossEncoderScorer, test: pd.DataFrame, batches: int) -> dict:
    """Seconds per pair at batch 16, teacher and student alternating on the same batches."""
    rows = test.sample(n=min(len(test), 16 * batches), random_state=0)
    chunks = [rows.iloc[i : i + 16] for i in range(0, len(rows) - 15, 16)]
    teacher.batch_size = student.batch_size = 16
    warm = chunks[0]
    teacher.logits(warm["query"].tolist(), warm["product_text"].tolist())
    student.predict_proba(warm["query"].tolist(), warm["product_text"].tolist())
    times = {"teacher": [], "student": []}
    for chunk in chunks:
        q, t = chunk["query"].tolist(), chunk["product_text"].tolist()
        for name, fn in (("teacher", teacher.logits), ("student", student.predict_proba)):
            started = time.perf_counter()
            fn(q, t)
            times[name].append((time.perf_counter() - started) / len(chunk))
    median = {name: float(np.median(v)) for name, v in times.items()}
    return {
        "teacher_ms_per_pair": round(1000 * median["teacher"], 3),
        "student_ms_per_pair": round(1000 * median["student"], 3),
        "speedup": round(median["teacher"] / median["student"], 2),
        "batches": len(chunks),
        "batch_size": 16,
    }


def untrained_teacher(args) -> RelevanceTeacher:
    """SmolLM2-135M with a fresh ESCI head: the teacher's shape, for the speed figure without a trained teacher."""
    from minielm.models.backbones import sequence_classifier, smollm2_dir
    from minielm.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(smollm2_dir(".cache/models"))
    model = sequence_classifier("smollm2", tokenizer, ".cache/models")
    return RelevanceTeacher(model, tokenizer, version="untrained-head", max_length=args.teacher_max_length)


def fresh_student(args, teacher: RelevanceTeacher | None) -> CrossEncoderScorer:
    torch.manual_seed(args.seed)
    if args.student_teacher_layers:
        if teacher is None:
            raise SystemExit("--student-teacher-layers: the student starts from the teacher; add the teacher part")
        return CrossEncoderScorer.from_teacher(teacher, args.student_teacher_layers, max_length=args.student_max_length)
    return CrossEncoderScorer.from_backbone(
        args.student_backbone, max_length=args.student_max_length, num_layers=args.student_layers
    )


def parse_sources(text: str) -> dict[str, float]:
    """``retrieved=0.5,same_category=0.3,random=0.2`` -> a dict (checked by the config)."""
    try:
        return {name.strip(): float(weight) for name, weight in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise SystemExit(f"--triple-sources: expected name=weight,... got {text!r}") from None


def scaling_data(args, data, index, texts, train_frame, teacher, teacher_dir: Path) -> dict:
    """The labelled set and the nested augmented sets, every triple labelled by the (cached) teacher."""
    rng = np.random.default_rng(args.seed)
    train_ids = sorted(train_frame["query_id"].unique())
    chosen = set(rng.choice(train_ids, size=min(args.labelled_queries, len(train_ids)), replace=False))
    labelled_pairs = train_frame[train_frame["query_id"].isin(chosen)]
    labelled_raw = labelled_set_triples(labelled_pairs, seed=args.seed)
    chosen_queries = set(labelled_pairs["query"])
    # The augmented pool: other train queries (never the test split) and their canonical forms.
    pool_queries = [q for q in unlabelled_queries(data, "train") if q not in chosen_queries]
    sources = RelevanceStudentConfig(triple_sources=parse_sources(args.triple_sources)).triple_sources
    pool = build_triples(
        pool_queries,
        data.products,
        index.search,
        triples_per_query=args.triples_per_query,
        sources=sources,
        seed=args.seed,
    )
    scales = sorted({int(s) for s in args.scales.split(",")})
    augmented_raw = nested_augmented_sets(pool, len(labelled_pairs), scales, seed=args.seed)
    cached = CachedTeacher(
        teacher, cache_path(args.label_cache or args.work_dir / "cache", teacher_dir, teacher.max_length)
    )
    cached.temperature = args.temperature
    before = len(cached)
    label_started = time.perf_counter()
    labelled_all = label_triples(
        pd.concat([labelled_raw, augmented_raw[max(scales)]], ignore_index=True), texts, cached
    )
    cached.flush()
    label_seconds = time.perf_counter() - label_started
    labelled = labelled_all.iloc[: len(labelled_raw)].reset_index(drop=True)
    augmented_all = labelled_all.iloc[len(labelled_raw) :].reset_index(drop=True)
    return {
        "scales": scales,
        "labelled_pairs": labelled_pairs,
        "labelled": labelled,
        "augmented": {m: augmented_all.iloc[: len(augmented_raw[m])] for m in scales},
        "data": {
            "labelled_queries": len(chosen),
            "labelled_pairs": len(labelled_pairs),
            "labelled_triples": len(labelled),
            "augmented_pool_triples": len(pool),
            "augmented_pool_pairs": pairs_in(pool),
            "triple_sources": sources,
            "teacher_label_seconds": round(label_seconds, 1),
            "teacher_labelled_pairs_new": len(cached) - before,
            "teacher_label_cache": str(cached.path),
        },
    }


def student_config(args) -> DistillConfig:
    """The student's training settings from the command line (no gold labels)."""
    return DistillConfig(
        relevance=RelevanceStudentConfig(
            batch_size=args.student_batch,
            learning_rate=args.student_lr,
            soft_label_weight=args.soft_label_weight,
            soft_label_temperature=args.temperature,
            max_length=args.student_max_length,
            gold_mix_weight=0.0,
            teacher_layers=args.student_teacher_layers,
            list_size=args.list_size,
            listwise_weight=args.listwise_weight,
            listwise_temperature=args.listwise_temperature,
        )
    )


def scaling_experiment(args, prepared, texts, test, teacher: RelevanceTeacher) -> dict:
    """One fresh student per scale on the prepared, teacher-labelled sets."""
    scales, labelled, augmented = prepared["scales"], prepared["labelled"], prepared["augmented"]
    labelled_pairs = prepared["labelled_pairs"]
    config = student_config(args)
    students: dict[int, CrossEncoderScorer] = {}
    test_scores: dict[int, np.ndarray] = {}  # each student's scores of the test pairs, for the per-query gap

    def train_and_evaluate(triples, steps, scale, run_config=config, gold=None):
        student = fresh_student(args, teacher)
        result = distill_relevance(
            student,
            triples,
            texts,
            run_config,
            args.work_dir / f"student-{scale}",
            gold=gold,
            seed=args.seed,
            steps=steps,
        )
        queries, product_text = test["query"].tolist(), test["product_text"].tolist()
        probabilities = student.predict_proba(queries, product_text)
        test_scores[scale] = expected_gain(probabilities)
        np.save(args.work_dir / f"student-{scale}" / "test_probabilities.npy", probabilities)
        metrics = relevance_metrics(test, probabilities, test_scores[scale], k=K)
        students[scale] = student
        print(f"scale {scale}: {steps} steps, {len(triples)} triples -> {metrics}", flush=True)
        return metrics, result.seconds

    points = run_scaling(labelled, augmented, train_and_evaluate, args.student_batch, args.epochs)
    main_point = points[-1]
    gold_mix = None
    if args.gold_mix_weight > 0:
        gold_config = config.model_copy(
            update={"relevance": config.relevance.model_copy(update={"gold_mix_weight": args.gold_mix_weight})}
        )
        triples = pd.concat([labelled, augmented[max(scales)]], ignore_index=True)
        gold = labelled_pairs[["query", "product_id", "esci_label"]]
        metrics, seconds = train_and_evaluate(triples, main_point.steps, -1, run_config=gold_config, gold=gold)
        gold_mix = {"gold_mix_weight": args.gold_mix_weight, "train_seconds": round(seconds, 1), **metrics}
    student = students[main_point.scale]
    return {
        "student_model": student,
        "student_test_scores": test_scores[main_point.scale],
        "student": {
            **main_point.metrics,
            "gold_labels": False,
            "parameters": sum(p.numel() for p in student.model.parameters()),
            "layers": student.model.encoder.config.num_hidden_layers,
            "teacher_layers": args.student_teacher_layers,
            "augmented_pairs": main_point.augmented_pairs,
            "steps": main_point.steps,
        },
        "student_gold_mix": gold_mix,
        "scaling": [p.as_dict(K) for p in points],
        "data": prepared["data"],
    }


def check_targets(result: dict) -> dict:
    """Each target of the issue: True / False, or None where its figures were not measured in this run."""
    ndcg = f"ndcg@{K}"
    teacher, student, bm25, speeds = result["teacher"], result["student"], result["bm25_baseline"], result["speed"]
    scaling = result["scaling"]
    smallest = next((p for p in scaling if p["scale"] > 0), scaling[0]) if scaling else None
    return {
        "teacher_macro_f1_beats_majority_by_0.15": (
            teacher["macro_f1"] >= result["majority"]["macro_f1"] + 0.15 if teacher else None
        ),
        "teacher_beats_bm25_macro_f1": teacher["macro_f1"] > bm25["macro_f1"] if teacher else None,
        "teacher_beats_bm25_ndcg": teacher[ndcg] > bm25[ndcg] if teacher else None,
        "student_ndcg_at_least_teacher": student[ndcg] >= teacher[ndcg] if teacher and student else None,
        "student_5x_faster_batch16": speeds["speedup"] >= 5.0 if speeds else None,
        "student_smaller": speeds["student_parameters"] < speeds["teacher_parameters"] if speeds else None,
        "largest_scale_beats_smallest_by_0.02_ndcg": (
            scaling[-1][f"ndcg_at_{K}"] - smallest[f"ndcg_at_{K}"] >= 0.02 if len(scaling) > 1 else None
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    parts = set(args.parts.split(","))
    unknown = parts - PARTS
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; expected a subset of {sorted(PARTS)}")
    torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), os.getloadavg()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data, data_dir = dataset(args)
    texts = product_texts(data)
    index = SearchIndex.build(data.products)
    train_frame = relevance_frame(data, "train", texts)
    test = relevance_frame(data, "test", texts, limit=args.test_pairs, seed=args.seed)
    majority, bm25 = baseline_metrics(index, train_frame, test, k=K)
    print(f"majority {majority}\nbm25 {bm25}", flush=True)

    teacher, teacher_metrics, teacher_dir = None, None, None
    if "teacher" in parts:
        teacher_dir = args.teacher_dir or train_teacher(args, data_dir)
        teacher = RelevanceTeacher.load(teacher_dir, batch_size=32)
        logits = teacher_test_logits(teacher, teacher_dir, test, args.work_dir / "cache")
        probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        teacher_metrics = {
            **relevance_metrics(test, probabilities, expected_gain(probabilities), k=K),
            "dir": str(teacher_dir),
            "parameters": sum(p.numel() for p in teacher.model.parameters()),
            "layers": teacher.model.config.num_hidden_layers,
            "soft_label_temperature": args.temperature,
        }
        print(f"teacher {teacher_metrics}", flush=True)
    scaling = {
        "student": None,
        "student_gold_mix": None,
        "scaling": [],
        "data": {},
        "student_model": None,
        "student_test_scores": None,
    }
    if parts & {"labels", "scaling"}:
        if teacher is None:
            raise SystemExit("--parts labels/scaling need the teacher part (a teacher labels the augmented pairs)")
        prepared = scaling_data(args, data, index, texts, train_frame, teacher, teacher_dir)
        scaling["data"] = prepared["data"]
        if "scaling" in parts:
            scaling = scaling_experiment(args, prepared, texts, test, teacher)
    speeds = None
    if "speed" in parts:
        speed_teacher = teacher or untrained_teacher(args)
        speed_student = scaling["student_model"] or fresh_student(args, teacher)
        speeds = {
            **speed(speed_teacher, speed_student, test, args.speed_batches),
            "teacher_parameters": sum(p.numel() for p in speed_teacher.model.parameters()),
            "student_parameters": sum(p.numel() for p in speed_student.model.parameters()),
            "student_layers": speed_student.model.encoder.config.num_hidden_layers,
            "teacher_max_length": speed_teacher.max_length,
            "student_max_length": speed_student.max_length,
        }
        print(f"speed {speeds}", flush=True)
    student_minus_teacher = None
    if teacher_metrics and scaling["student_test_scores"] is not None:
        student_minus_teacher = paired_difference(
            per_query_ndcg(test, scaling["student_test_scores"], K),
            per_query_ndcg(test, expected_gain(probabilities), K),
        )
        print(f"student - teacher nDCG@{K} per test query {student_minus_teacher}", flush=True)
    result = {
        "command": " ".join(
            shlex.quote(a) for a in [sys.executable, str(Path(__file__).relative_to(ROOT)), *(argv or sys.argv[1:])]
        ),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": args.threads},
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "parts": sorted(parts),
        "data": {
            "dir": str(data_dir),
            "train_pairs": len(train_frame),
            "test_pairs": len(test),
            "test_queries": int(test["query_id"].nunique()),
            **scaling["data"],
        },
        "majority_accuracy": majority["accuracy"],
        "majority": majority,
        "bm25_baseline": bm25,
        "teacher": teacher_metrics,
        "student": scaling["student"],
        "student_gold_mix": scaling["student_gold_mix"],
        "student_minus_teacher_ndcg": student_minus_teacher,
        "scaling": scaling["scaling"],
        "speedup_batch16": speeds["speedup"] if speeds else None,
        "speed": speeds,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    result["targets"] = check_targets(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    written = [args.out]
    if result["scaling"]:
        written.append(write_scaling_report(result, args.out.with_suffix(".html")))
    print(json.dumps({"targets": result["targets"], "scaling": result["scaling"], "speed": speeds}, indent=2))
    print("wrote " + ", ".join(map(str, written)))
    return result


if __name__ == "__main__":
    main()
