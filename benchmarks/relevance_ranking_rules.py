"""Why a relevance student ranks worse than its teacher: nDCG@10 under three ranking rules, and the share of
misordered pairs per class pair, from a finished ``relevance_distill.py`` run's saved outputs (no model runs).

Ranking rules, all from the same class probabilities:
- ``graded``: the models' scalar, the expected graded gain (E 1, S 2/3, C 1/3, I 0), what the benchmark ranks by;
- ``esci_gain``: the expected ESCI nDCG gain (E 1, S 0.1, C 0.01, I 0), the order that maximises expected DCG;
- ``p_exact``: P(Exact) alone.

Misordered pairs: within each test query, for every two judged products of different classes (E above S,
S above C, ...), the share the graded score puts in the wrong order (ties count as wrong).

    PYTHONPATH=. .venv/bin/python benchmarks/relevance_ranking_rules.py --data DATA --test-pairs 4000 \\
        --teacher-logits WORK/cache/teacher_logits_*.npy --student WORK/student-64/test_probabilities.npy
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minielm.data.esci import ESCI_GAINS, load_esci  # noqa: E402
from minielm.models.relevance_score import ESCI_CLASSES, expected_gain  # noqa: E402
from minielm.teachers.data import product_texts, relevance_frame  # noqa: E402
from minielm.teachers.metrics import paired_difference, per_query_ndcg  # noqa: E402

RULES = {
    "graded": expected_gain,
    "esci_gain": lambda p: p @ np.asarray([ESCI_GAINS[c] for c in ESCI_CLASSES]),
    "p_exact": lambda p: p[:, 0],
}


def misordered_pairs(frame, scores: np.ndarray) -> dict[str, float]:
    """Per class pair 'X>Y' (X the better class): share of same-query pairs scored Y >= X."""
    rank = {c: i for i, c in enumerate(ESCI_CLASSES)}
    wrong: dict[str, int] = {}
    total: dict[str, int] = {}
    for _, rows in frame.assign(_score=scores).groupby("query_id", sort=False):
        labels, values = rows["esci_label"].tolist(), rows["_score"].to_numpy()
        for i, j in itertools.combinations(range(len(labels)), 2):
            if labels[i] == labels[j]:
                continue
            better, worse = (i, j) if rank[labels[i]] < rank[labels[j]] else (j, i)
            key = f"{labels[better]}>{labels[worse]}"
            total[key] = total.get(key, 0) + 1
            wrong[key] = wrong.get(key, 0) + int(values[better] <= values[worse])
    return {key: round(wrong[key] / total[key], 4) for key in sorted(total)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the ESCI data dir the run used")
    p.add_argument("--test-pairs", type=int, default=4000, help="the run's --test-pairs")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed")
    p.add_argument("--teacher-logits", type=Path, required=True, help="the run's cached teacher test logits (.npy)")
    p.add_argument("--student", type=Path, required=True, help="a student's test_probabilities.npy")
    p.add_argument("--out", type=Path, help="JSON output (default: print only)")
    args = p.parse_args(argv)
    load_start = os.getloadavg()
    data = load_esci(args.data)
    test = relevance_frame(data, "test", product_texts(data), limit=args.test_pairs, seed=args.seed)
    teacher = torch.softmax(torch.from_numpy(np.load(args.teacher_logits)), dim=-1).numpy()
    student = np.load(args.student)
    for flag, array in (("--teacher-logits", teacher), ("--student", student)):
        if array.shape != (len(test), len(ESCI_CLASSES)):
            raise SystemExit(
                f"{flag}: expected shape ({len(test)}, {len(ESCI_CLASSES)}) for these test pairs, got {array.shape}"
            )
    rules = {}
    for name, rule in RULES.items():
        teacher_ndcg, student_ndcg = per_query_ndcg(test, rule(teacher)), per_query_ndcg(test, rule(student))
        rules[name] = {
            "teacher_ndcg@10": round(float(teacher_ndcg.mean()), 4),
            "student_ndcg@10": round(float(student_ndcg.mean()), 4),
            "student_minus_teacher": paired_difference(student_ndcg, teacher_ndcg),
        }
    result = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "cpus": os.cpu_count(),
        "load_avg_start": load_start,
        "test_pairs": len(test),
        "test_queries": int(test["query_id"].nunique()),
        "rules": rules,
        "misordered_pairs_graded": {
            "teacher": misordered_pairs(test, expected_gain(teacher)),
            "student": misordered_pairs(test, expected_gain(student)),
        },
        "load_avg_end": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
