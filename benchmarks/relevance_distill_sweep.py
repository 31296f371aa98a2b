"""One point of a lever sweep for the relevance student, judged on the VALIDATION split.

Learning rate, loss weights, epochs and scale are picked here, so that the test split of
``benchmarks/relevance_distill.py`` is scored once, by the chosen settings. Takes that benchmark's
options (data, teacher, labelled set, student settings; ``--label-cache`` so the teacher's labels are
reused) plus ``--scale M``: trains one fresh student on the labelled set + M x augmented pairs, scores it
and the teacher on the validation pairs, and appends one JSON line to ``--sweep-out``.

    PYTHONPATH=. .venv/bin/python benchmarks/relevance_distill_sweep.py --tag D16 --scale 16 \\
        --data /tmp/rel/data --teacher-dir TEACHER --label-cache /tmp/rel3/cache --labelled-queries 6 \\
        --scales 0,1,4,16,32,64 --student-layers 3 --student-max-length 48 --threads 1 \\
        --student-lr 4e-4 --soft-label-weight 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minielm.distill.relevance_label_cache import CachedTeacher, cache_path  # noqa: E402
from minielm.distill.relevance_scaling import steps_for  # noqa: E402
from minielm.models.relevance_score import expected_gain  # noqa: E402
from minielm.models.relevance_teacher import RelevanceTeacher  # noqa: E402
from minielm.search import SearchIndex  # noqa: E402
from minielm.teachers.data import product_texts, relevance_frame  # noqa: E402
from minielm.teachers.metrics import relevance_metrics  # noqa: E402


def _benchmark():
    spec = importlib.util.spec_from_file_location("relevance_distill", ROOT / "benchmarks" / "relevance_distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    own = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    own.add_argument("--tag", required=True)
    own.add_argument("--scale", type=int, required=True, help="one of --scales")
    own.add_argument(
        "--sweep-out", type=Path, default=ROOT / "benchmarks" / "results" / "relevance_distill_sweep.jsonl"
    )
    mine, rest = own.parse_known_args(argv)
    bench = _benchmark()
    args = bench.parse_args(rest)
    if not args.teacher_dir:
        raise SystemExit("--teacher-dir: the sweep needs a trained teacher")
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    data, _ = bench.dataset(args)
    texts = product_texts(data)
    index = SearchIndex.build(data.products)
    train_frame = relevance_frame(data, "train", texts)
    validation = relevance_frame(data, "validation", texts, limit=args.test_pairs, seed=args.seed)
    teacher = RelevanceTeacher.load(args.teacher_dir, batch_size=32)
    cached = CachedTeacher(
        teacher, cache_path(args.label_cache or args.work_dir / "cache", args.teacher_dir, teacher.max_length)
    )
    queries, product_text = validation["query"].tolist(), validation["product_text"].tolist()
    probabilities = torch.softmax(torch.from_numpy(cached.logits(queries, product_text)), -1).numpy()
    cached.flush()
    teacher_metrics = relevance_metrics(validation, probabilities, expected_gain(probabilities), k=bench.K)
    prepared = bench.scaling_data(args, data, index, texts, train_frame, teacher, args.teacher_dir)
    if mine.scale not in prepared["augmented"]:
        raise SystemExit(f"--scale {mine.scale}: not in --scales {prepared['scales']}")
    triples = pd.concat([prepared["labelled"], prepared["augmented"][mine.scale]], ignore_index=True)
    steps = steps_for(len(triples), args.student_batch, args.epochs)
    config = bench.student_config(args)
    student = bench.fresh_student(args, teacher)
    started = time.perf_counter()
    bench.distill_relevance(student, triples, texts, config, args.work_dir / "student", seed=args.seed, steps=steps)
    seconds = time.perf_counter() - started
    metrics = relevance_metrics(
        validation, student.predict_proba(queries, product_text), student.score(queries, product_text), k=bench.K
    )
    keys = (f"ndcg@{bench.K}", "macro_f1", "accuracy")
    record = {
        "tag": mine.tag,
        "scale": mine.scale,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "validation_pairs": len(validation),
        "validation_queries": int(validation["query_id"].nunique()),
        "student_config": config.relevance.model_dump(mode="json"),
        "teacher_validation": {k: teacher_metrics[k] for k in keys},
        "student_validation": {k: metrics[k] for k in keys},
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, str(Path(__file__).relative_to(ROOT)), *argv]),
    }
    print(json.dumps(record), flush=True)
    mine.sweep_out.parent.mkdir(parents=True, exist_ok=True)
    with mine.sweep_out.open("a") as out:
        out.write(json.dumps(record) + "\n")
    return record


if __name__ == "__main__":
    main()
