"""The relevance-distillation parts of issue 16 on hand-made data: the graded score, temperature-scaled
soft labels, the BM25 and majority baselines, the scaling-curve sets, bad input, the curve report and
the judge / simulated-shopper roles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from minielm.config import ConfigError, DistillConfig, ModelNames, RelevanceStudentConfig, load_settings
from minielm.distill.augment import AugmentedDataError, label_triples
from minielm.distill.relevance_report import scaling_curve_svg, write_scaling_report
from minielm.distill.relevance_scaling import (
    labelled_set_triples,
    nested_augmented_sets,
    pairs_in,
    run_scaling,
    steps_for,
)
from minielm.distill.relevance_student import distill_relevance
from minielm.models.relevance_roles import (
    RelevanceModelError,
    load_relevance_model,
    relevance_model_for,
    role_model_name,
)
from minielm.models.relevance_score import ESCI_CLASSES, SCORE_GAINS, expected_gain, expected_gain_from_logits
from minielm.models.relevance_teacher import RelevanceTeacher
from minielm.search import SearchIndex
from minielm.teachers.relevance_baselines import BM25Baseline, baseline_metrics, bm25_pair_scores
from tests.unit.distill_fixtures import OverlapTeacher, product_texts, tiny_bert_scorer, tiny_catalog

# -- the score --------------------------------------------------------------------------------------


def test_graded_score_keeps_every_pair_of_classes_a_third_apart():
    one_hot = np.eye(4)
    scores = expected_gain(one_hot)
    assert list(scores) == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert np.all(np.diff(scores) < -0.33)  # E > S > C > I, each step at least a third
    logits = torch.log(torch.tensor(one_hot * 0.97 + 0.01, dtype=torch.float32))
    assert expected_gain_from_logits(logits).numpy() == pytest.approx(
        expected_gain(torch.softmax(logits, -1)), abs=1e-6
    )
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        expected_gain(np.ones((2, 3)))
    assert ESCI_CLASSES == ("E", "S", "C", "I") and len(SCORE_GAINS) == 4


# -- teacher soft labels ----------------------------------------------------------------------------


def _tiny_teacher(temperature: float = 1.0) -> RelevanceTeacher:
    from minielm.models.backbones import sequence_classifier
    from minielm.models.tokenizer import train_bpe_tokenizer
    from minielm.teachers.config import TinyBackboneConfig

    corpus = [f"{c} {t} product query answer" for c in ("red", "blue", "green") for t in ("shoe", "mug", "lamp")]
    tokenizer = train_bpe_tokenizer(corpus * 20, vocab_size=300)
    shape = TinyBackboneConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = sequence_classifier("tiny", tokenizer, ".cache/models", shape)
    with torch.no_grad():
        model.score.weight.mul_(40.0)  # confident logits, so the temperature visibly softens them
    return RelevanceTeacher(model, tokenizer, max_length=32, temperature=temperature)


def test_teacher_soft_labels_are_temperature_scaled():
    queries, texts = ["red shoe", "blue mug", "green lamp"], ["red shoe", "red lamp", "blue shoe"]
    sharp = _tiny_teacher(1.0)
    soft = _tiny_teacher(3.0)
    p1, p3 = sharp.predict_proba(queries, texts), soft.predict_proba(queries, texts)
    expected = torch.softmax(torch.from_numpy(sharp.logits(queries, texts)) / 3.0, -1).numpy()
    np.testing.assert_allclose(p3, expected, atol=1e-5)
    assert (p1.argmax(1) == p3.argmax(1)).all()
    entropy = lambda p: -(p * np.log(p + 1e-12)).sum(1)  # noqa: E731
    assert (entropy(p3) > entropy(p1)).all()
    np.testing.assert_allclose(soft.score(queries, texts), expected_gain(p3), atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        _tiny_teacher(0.0)


# -- baselines --------------------------------------------------------------------------------------


def test_bm25_thresholds_are_ordinal_and_fit_separable_scores():
    relative = np.array([0.95, 0.9, 0.7, 0.65, 0.4, 0.35, 0.1, 0.0])
    labels = ["E", "E", "S", "S", "C", "C", "I", "I"]
    model = BM25Baseline.fit(relative, labels)
    t_e, t_s, t_c = model.thresholds
    assert t_e > t_s > t_c
    assert [ESCI_CLASSES[i] for i in model.probabilities(relative).argmax(1)] == labels


def _labelled_frame(queries: list[str], texts: dict[str, str], teacher) -> pd.DataFrame:
    rows = []
    for n, query in enumerate(queries):
        probabilities = teacher.predict_proba([query] * len(texts), list(texts.values()))
        for (product_id, text), p in zip(texts.items(), probabilities):
            rows.append((f"q{n}", query, product_id, ESCI_CLASSES[int(np.argmax(p))], text))
    return pd.DataFrame(rows, columns=["query_id", "query", "product_id", "esci_label", "product_text"])


def test_baselines_on_a_tiny_catalog():
    products = tiny_catalog()
    texts = product_texts(products)
    index = SearchIndex.build(products.rename(columns={"category": "product_category"}))
    train = _labelled_frame(["red shoe", "blue lamp", "black mug", "white chair"], texts, OverlapTeacher())
    test = _labelled_frame(["green jacket", "red kettle"], texts, OverlapTeacher())
    raw, relative = bm25_pair_scores(index, test["query"], test["product_id"])
    assert raw.shape == relative.shape == (len(test),) and relative.max() == pytest.approx(1.0)
    majority, bm25 = baseline_metrics(index, train, test, k=10)
    assert majority["label"] == test["esci_label"].value_counts().idxmax()
    assert majority["accuracy"] == pytest.approx(test["esci_label"].value_counts(normalize=True).max())
    assert bm25["ndcg@10"] > 0.5 and 0 <= bm25["macro_f1"] <= 1 and len(bm25["thresholds"]) == 3
    with pytest.raises(ValueError, match="2 queries but 1 product ids"):
        bm25_pair_scores(index, ["a", "b"], ["P000"])


# -- scaling-curve sets -----------------------------------------------------------------------------


def _pairs() -> pd.DataFrame:
    rows = [("q1", "red shoe", f"P{i:03d}") for i in range(5)] + [("q2", "blue mug", f"P{i:03d}") for i in (7, 8)]
    rows.append(("q3", "lonely", "P009"))
    return pd.DataFrame(rows, columns=["query_id", "query", "product_id"])


def test_labelled_set_triples_use_every_judged_pair():
    triples = labelled_set_triples(_pairs(), seed=1)
    assert len(triples) == 3 + 1  # 5 products -> 3 triples (one reused), 2 -> 1, a lone product -> none
    assert (triples["source"] == "labelled").all()
    assert pairs_in(triples) == 7
    with pytest.raises(AugmentedDataError, match="0 rows"):
        labelled_set_triples(_pairs().iloc[:0])
    with pytest.raises(AugmentedDataError, match="no query has two judged products"):
        labelled_set_triples(_pairs().iloc[-1:])


def test_nested_augmented_sets_are_prefixes_and_fail_when_too_small():
    pool = pd.DataFrame({"query": [f"q{i}" for i in range(40)], "product_a": "A", "product_b": "B", "source": "random"})
    sets = nested_augmented_sets(pool, labelled_pairs=4, scales=[0, 1, 4, 16], seed=0)
    assert {m: len(s) for m, s in sets.items()} == {0: 0, 1: 2, 4: 8, 16: 32}
    assert sets[16].iloc[:8].equals(sets[4])
    with pytest.raises(AugmentedDataError, match="40 triples but scale 32x of 4 labelled pairs needs 64"):
        nested_augmented_sets(pool, labelled_pairs=4, scales=[1, 32])
    with pytest.raises(AugmentedDataError, match="0 augmented triples"):
        nested_augmented_sets(pool.iloc[:0], labelled_pairs=4, scales=[1])
    assert steps_for(33, 16, 1.0) == 3 and steps_for(1, 16, 0.1) == 1


def test_run_scaling_trains_one_student_per_scale_with_steps_in_proportion():
    products = tiny_catalog()
    texts = product_texts(products)
    ids = list(texts)
    raw = pd.DataFrame(
        {"query": ["red shoe"] * 20, "product_a": ids[:20], "product_b": ids[10:30], "source": "retrieved"}
    )
    labelled_all = label_triples(raw, texts, OverlapTeacher())
    labelled, pool = labelled_all.iloc[:4], labelled_all.iloc[4:]
    sets = {0: pool.iloc[:0], 2: pool.iloc[:8]}
    calls = []

    def fake(triples, steps, scale):
        calls.append((scale, len(triples), steps))
        return {"ndcg@10": 0.5 + scale / 10, "macro_f1": 0.3, "accuracy": 0.4}, 1.0

    points = run_scaling(labelled, sets, fake, batch_size=4, epochs=2.0)
    assert calls == [(0, 4, 2), (2, 12, 6)]
    assert [p.as_dict(10)["ndcg_at_10"] for p in points] == [0.5, 0.7]
    assert points[1].augmented_pairs == pairs_in(
        pool.iloc[:8].rename(columns={"pos_product_id": "product_a", "neg_product_id": "product_b"})
    )


def test_scaling_report_draws_every_point(tmp_path):
    scaling = [
        {"augmented_pairs": n, "ndcg_at_10": v, "macro_f1": f, "steps": 1, "train_triples": 2}
        for n, v, f in [(0, 0.5, 0.3), (100, 0.6, 0.35), (400, 0.7, 0.4)]
    ]
    svg = scaling_curve_svg(scaling, {"teacher nDCG@10": 0.65})
    assert svg.count("<circle") == 6 and "teacher nDCG@10" in svg and ">400<" in svg
    result = {"scaling": scaling, "teacher": {"ndcg@10": 0.65}, "bm25_baseline": {"ndcg@10": 0.6}, "command": "x"}
    page = write_scaling_report(result, tmp_path / "curve.html").read_text()
    assert "<svg" in page and "BM25 nDCG@10" in page and "0.7000" in page
    with pytest.raises(ValueError, match="no points"):
        scaling_curve_svg([])


# -- bad input: named column and count, nothing dropped ------------------------------------------------


def test_label_triples_names_the_column_and_count_of_unknown_products():
    products = tiny_catalog()
    texts = product_texts(products)
    triples = pd.DataFrame(
        {"query": ["red shoe"] * 3, "product_a": ["P000", "NOPE1", "NOPE2"], "product_b": ["P001"] * 3}
    )
    with pytest.raises(
        AugmentedDataError, match=r"column 'product_a' has 2 row\(s\) whose product is not in the catalog"
    ):
        label_triples(triples, texts, OverlapTeacher())
    with pytest.raises(AugmentedDataError, match="0 triples"):
        label_triples(triples.iloc[:0], texts, OverlapTeacher())


def _labelled_triples(texts) -> pd.DataFrame:
    ids = list(texts)
    raw = pd.DataFrame({"query": ["red shoe"] * 4, "product_a": ids[:4], "product_b": ids[4:8], "source": "random"})
    return label_triples(raw, texts, OverlapTeacher())


@pytest.mark.parametrize(
    "gold,message",
    [
        (
            pd.DataFrame({"query": ["a", "b", "c"], "product_id": ["P000", "X", "Y"], "esci_label": ["E", "S", "I"]}),
            r"column 'product_id' has 2 row\(s\) whose product is not in the catalog",
        ),
        (
            pd.DataFrame({"query": ["a", "b"], "product_id": ["P000", "P001"], "esci_label": ["E", "relevant"]}),
            r"column 'esci_label' has 1 row\(s\) with labels \['relevant'\]",
        ),
        (pd.DataFrame(columns=["query", "product_id", "esci_label"]), "gold pairs have 0 rows"),
    ],
)
def test_gold_pairs_are_checked_whole(tmp_path, gold, message):
    texts = product_texts(tiny_catalog())
    config = DistillConfig(relevance=RelevanceStudentConfig(gold_mix_weight=1.0))
    with pytest.raises(AugmentedDataError, match=message):
        distill_relevance(tiny_bert_scorer(), _labelled_triples(texts), texts, config, tmp_path / "w", gold=gold)
    assert not (tmp_path / "w").exists()


def test_labelled_triples_with_unknown_products_fail_before_training(tmp_path):
    texts = product_texts(tiny_catalog())
    labelled = _labelled_triples(texts)
    labelled.loc[1, "neg_product_id"] = "GONE"
    with pytest.raises(AugmentedDataError, match=r"column 'neg_product_id' has 1 row\(s\)"):
        distill_relevance(tiny_bert_scorer(), labelled, texts, DistillConfig(), tmp_path / "w")


# -- judge and simulated shopper --------------------------------------------------------------------


def test_judge_and_simulator_must_be_different_models():
    names = ModelNames()
    assert (names.relevance_judge, names.relevance_simulator) == ("student-relevance", "teacher-relevance")
    with pytest.raises(ValueError, match="must not be the network that judges"):
        ModelNames(relevance_judge="student-relevance", relevance_simulator="student-relevance")
    with pytest.raises(ConfigError, match="relevance_simulator"):
        load_settings(overrides=["models.relevance_simulator=student-relevance"])
    settings = load_settings()
    assert role_model_name(settings, "judge") == "student-relevance"
    assert role_model_name(settings, "simulator") == "teacher-relevance"
    with pytest.raises(RelevanceModelError, match="role"):
        role_model_name(settings, "shopper")


def test_load_relevance_model_opens_students_and_teachers(tmp_path):
    student = tiny_bert_scorer()
    student.save(tmp_path / "student")
    loaded = load_relevance_model(tmp_path / "student", version="v7")
    assert loaded.version == "v7" and loaded.score(["red shoe"], ["red shoe"]).shape == (1,)
    teacher = _tiny_teacher()
    teacher.save(tmp_path / "teacher")
    assert isinstance(load_relevance_model(tmp_path / "teacher"), RelevanceTeacher)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RelevanceModelError, match="holds no relevance model"):
        load_relevance_model(tmp_path / "empty")


class _Registry:
    """A registry with one staged version per name (the real one is tested against S3 elsewhere)."""

    def __init__(self, staged: dict[str, str]) -> None:
        self.staged = staged

    def stage(self, name, stage):
        if name not in self.staged:
            return None
        return type("Entry", (), {"name": name, "version": "v1"})()

    def download(self, name, version, dest):
        return self.staged[name]


def test_relevance_model_for_fetches_the_role_model(tmp_path):
    tiny_bert_scorer().save(tmp_path / "student")
    settings = load_settings()
    judge = relevance_model_for("judge", settings, _Registry({"student-relevance": tmp_path / "student"}), tmp_path)
    assert judge.version == "v1"
    with pytest.raises(RelevanceModelError, match="relevance simulator is 'teacher-relevance'"):
        relevance_model_for("simulator", settings, _Registry({}), tmp_path)
    assert json.loads((tmp_path / "student" / "cross_encoder.json").read_text())["gains"] == list(SCORE_GAINS)
