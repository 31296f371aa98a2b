"""The pure helpers of benchmarks/serving.py: which queries the student is sent, and what the JSON records about a
saved model (the benchmark itself starts servers and is run by hand)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serving.py"


def _benchmark():
    if "serving_benchmark" in sys.modules:
        return sys.modules["serving_benchmark"]
    spec = importlib.util.spec_from_file_location("serving_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_drawn_queries_are_unique_seeded_and_never_a_cached_head_query():
    serving = _benchmark()
    queries = ["usb hub", "  usb hub ", "Laptop  Stand", "oak desk", "", "red kettle", "oak desk", "iphone charger"]

    drawn, dropped = serving.draw_queries(queries, seed=0)

    assert sorted(drawn) == ["oak desk", "red kettle", "usb hub"]
    assert dropped == 2  # "Laptop  Stand" and "iphone charger" normalise to head queries
    assert serving.draw_queries(list(reversed(queries)), seed=0) == (drawn, dropped)
    orders = {tuple(serving.draw_queries([f"query {i}" for i in range(20)], seed)[0]) for seed in range(3)}
    assert len(orders) == 3


def test_saved_model_record_reads_metadata_shape_and_output_vocabulary(tmp_path):
    serving = _benchmark()
    (tmp_path / "metadata.json").write_text(
        json.dumps({"model_class": "m:C", "version": "v3", "min_confidence": 0.07, "front_end": "baseline"})
    )
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 576, "num_hidden_layers": 4, "vocab_size": 99}))

    record = serving.saved_model_record(tmp_path)

    assert record["min_confidence"] == 0.07 and record["front_end"] == "baseline" and record["version"] == "v3"
    assert record["shape"]["num_hidden_layers"] == 4 and record["shape"]["hidden_size"] == 576
    assert record["output_vocabulary_tokens"] is None and record["stand_in"] is False

    (tmp_path / "output_vocabulary.json").write_text(json.dumps({"vocab_size": 99, "token_ids": [0, 5, 7]}))
    assert serving.saved_model_record(tmp_path)["output_vocabulary_tokens"] == 3
