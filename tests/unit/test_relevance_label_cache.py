"""The teacher-label cache: pairs seen once are never sent to the teacher again, across processes (the
file), and the temperature applies to cached logits, so soft labels at a new temperature need no relabelling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from minielm.distill.augment import label_triples
from minielm.distill.relevance_label_cache import CachedTeacher, cache_path, pair_key
from tests.unit.distill_fixtures import OverlapTeacher, product_texts, tiny_catalog


class CountingTeacher:
    """Logits from the rule-based teacher; counts the pairs it is asked about."""

    version = "counting"

    def __init__(self) -> None:
        self.pairs_asked = 0
        self.rules = OverlapTeacher()

    def logits(self, queries, texts) -> np.ndarray:
        self.pairs_asked += len(queries)
        return np.log(self.rules.predict_proba(queries, texts))


def test_cached_pairs_are_not_asked_again_and_survive_a_new_process(tmp_path):
    path = tmp_path / "labels.npz"
    teacher = CountingTeacher()
    cached = CachedTeacher(teacher, path, flush_every=2)
    queries, texts = ["red shoe", "red shoe", "blue lamp"], ["red shoe size 9", "red shoe size 9", "blue lamp"]
    first = cached.logits(queries, texts)
    assert teacher.pairs_asked == 2  # the duplicate pair is asked once
    assert np.allclose(first[0], first[1])
    assert path.is_file()  # flushed: 2 new pairs >= flush_every
    again = cached.logits(["blue lamp", "green mug"], ["blue lamp", "green mug"])
    assert teacher.pairs_asked == 3 and np.allclose(again[0], first[2])
    cached.flush()

    fresh_teacher = CountingTeacher()
    reopened = CachedTeacher(fresh_teacher, path)
    assert len(reopened) == 3
    assert np.allclose(reopened.logits(queries, texts), first)
    assert fresh_teacher.pairs_asked == 0
    assert reopened.logits([], []).shape == (0, 4)


def test_temperature_applies_to_cached_logits():
    teacher = CountingTeacher()
    logits = teacher.logits(["red shoe"], ["red shoe size 9"])
    cached = CachedTeacher(teacher, "/nonexistent/never-written.npz", temperature=2.0)
    soft = cached.predict_proba(["red shoe"], ["red shoe size 9"])
    expected = np.exp(logits / 2.0) / np.exp(logits / 2.0).sum(axis=1, keepdims=True)
    assert soft == pytest.approx(expected, abs=1e-6)
    cached.temperature = 1.0
    assert cached.predict_proba(["red shoe"], ["red shoe size 9"]) == pytest.approx(np.exp(logits), abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        CachedTeacher(teacher, "x.npz", temperature=0)


def test_label_triples_through_the_cache_match_the_teacher(tmp_path):
    catalog = tiny_catalog()
    texts = product_texts(catalog)
    ids = list(texts)
    triples = pd.DataFrame(
        {
            "query": ["red shoe", "blue lamp", "red shoe"],
            "product_a": ids[:3],
            "product_b": ids[3:6],
            "source": "random",
        }
    )
    direct = label_triples(triples, texts, OverlapTeacher())
    teacher = CountingTeacher()
    via_cache = label_triples(triples, texts, CachedTeacher(teacher, tmp_path / "c.npz"))
    assert teacher.pairs_asked == 6
    assert np.allclose(direct["margin"], via_cache["margin"], atol=1e-5)
    assert (direct["pos_product_id"] == via_cache["pos_product_id"]).all()


def test_cache_file_names_the_teacher_weights(tmp_path):
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    (teacher_dir / "model.safetensors").write_bytes(b"one")
    first = cache_path(tmp_path / "cache", teacher_dir, 48)
    assert first == cache_path(tmp_path / "cache", teacher_dir, 48)
    assert first != cache_path(tmp_path / "cache", teacher_dir, 64)
    (teacher_dir / "model.safetensors").write_bytes(b"retrained")
    assert first != cache_path(tmp_path / "cache", teacher_dir, 48)
    assert pair_key("a", "b") != pair_key("a b", "")
