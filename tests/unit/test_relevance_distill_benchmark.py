"""benchmarks/relevance_distill.py end to end at micro scale (tiny teacher, 1-layer MiniLM student):
every part runs, the JSON has the issue's keys and the targets are judged from the measured figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "relevance_distill.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("relevance_distill_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_every_part_and_writes_the_issue_keys(tmp_path):
    out = tmp_path / "result.json"
    args = "--products 200 --queries 60 --test-pairs 120 --teacher-backbone tiny --teacher-steps 8 "
    args += "--teacher-batch 16 --teacher-lr 3e-3 --labelled-queries 2 --scales 0,1,2 --triples-per-query 4 "
    args += "--epochs 1 --student-layers 1 --speed-batches 1 --threads 1 --student-max-length 32 --student-batch 4"
    result = _benchmark().main([*args.split(), "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    saved = json.loads(out.read_text())
    for key in ("teacher", "student", "majority_accuracy", "bm25_baseline", "scaling", "speedup_batch16"):
        assert saved[key] is not None, key
    assert [p["scale"] for p in saved["scaling"]] == [0, 1, 2]
    assert saved["scaling"][0]["augmented_pairs"] == 0 < saved["scaling"][1]["augmented_pairs"]
    assert saved["scaling"][2]["steps"] > saved["scaling"][1]["steps"] > saved["scaling"][0]["steps"]
    assert saved["student"]["gold_labels"] is False and saved["student_gold_mix"] is None
    # The per-query gap is read from the scores the student's nDCG came from.
    gap = saved["student_minus_teacher_ndcg"]
    assert gap["items"] == saved["data"]["test_queries"]
    assert gap["mean"] == pytest.approx(saved["student"]["ndcg@10"] - saved["teacher"]["ndcg@10"])
    assert set(saved["targets"]) == set(result["targets"]) and all(
        isinstance(v, bool) for v in saved["targets"].values()
    )
    # The tiny teacher (0.5M) is smaller than any MiniLM student: the JSON must say so, not hide it.
    assert saved["targets"]["student_smaller"] is False
    assert out.with_suffix(".html").read_text().count("<circle") == 6
    assert saved["load_avg_start"] and saved["machine"]["cpu_count"] and saved["command"]
    # The teacher's labels were cached: labelling the same sets again asks the teacher for no pair.
    assert saved["data"]["teacher_labelled_pairs_new"] > 0
    again = _benchmark().main(
        [
            *args.split(),
            *("--parts", "teacher,labels", "--teacher-dir", saved["teacher"]["dir"]),
            *("--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "labels.json")),
        ]
    )
    assert again["data"]["teacher_labelled_pairs_new"] == 0
    assert again["data"]["labelled_triples"] == saved["data"]["labelled_triples"] and again["student"] is None
