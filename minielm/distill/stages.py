"""The distillation stages as plain functions over directories: what the CLI, the KFP components and
the demo call. Each validates its inputs before any model work and returns a JSON-able summary.

  label_augmented_pairs  -> triples.parquet (teacher-labelled, augmented)
  distill_relevance_student(triples) -> cross-encoder directory
  distill_rewriter_student(teacher)  -> causal LM directory (same format as the teacher)
  evaluate_students      -> teacher / student / raw / oracle report
  gate_students          -> pass/fail with reasons
  register_students      -> registry versions (candidate, or production when asked)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from minielm.config import DistillConfig, EvalConfig, GateConfig, ServingConfig, Settings
from minielm.data.esci import CANONICAL_QUERY, PRODUCT_TITLE, QUERY
from minielm.distill.augment import AugmentedDataError, build_triples, label_triples, validate_labelled_triples
from minielm.distill.evaluate import evaluate_relevance, evaluate_rewriters, format_quality_table
from minielm.logs import get_logger

log = get_logger(__name__)

TRIPLES_FILE = "triples.parquet"
MODEL_SUBDIR = "model"
TEACHER_EXPORT = "final"  # where the teacher trainers export inside their output directory


def _load_data(dataset_dir: Path | str):
    """The dataset as the teachers saw it: data without canonical rewrites gets the label-free run's
    validation split (made by query, deterministically)."""
    from minielm.teachers.data import load_teacher_data
    from minielm.teachers.rewriter import uses_label_free

    if uses_label_free(Path(dataset_dir), Settings().teachers.rewriter):
        from minielm.teachers.label_free import LabelFreeConfig, load_label_free_data

        return load_label_free_data(Path(dataset_dir), LabelFreeConfig())
    return load_teacher_data(Path(dataset_dir))


def _index(index_dir: Path | str | None, data):
    from minielm.search import SearchIndex

    return SearchIndex.load(index_dir) if index_dir else SearchIndex.build(data.products)


def unlabelled_queries(data, split: str = "train") -> list[str]:
    """The split's shopper queries (and their canonical forms, when the data has them), deduplicated."""
    from minielm.teachers.data import split_examples

    examples = split_examples(data, split, "distillation")
    queries = examples[QUERY].astype(str).tolist()
    if CANONICAL_QUERY in examples.columns:
        queries += examples[CANONICAL_QUERY].dropna().astype(str).tolist()
    return list(dict.fromkeys(q for q in queries if q.strip()))


def validate_training_data(dataset_dir: Path | str) -> dict[str, int]:
    """Both teachers' data checks, before any model is built; returns sizes per split. Data without
    ``canonical_query`` passes too: the rewriter then trains label-free (and gets a validation split)."""
    from minielm.teachers.data import product_texts, relevance_frame, rewrite_pairs, split_examples
    from minielm.teachers.rewriter import uses_label_free

    label_free = uses_label_free(Path(dataset_dir), Settings().teachers.rewriter)
    data = _load_data(dataset_dir)
    texts = product_texts(data)
    pairs = [] if label_free else rewrite_pairs(data, "train")
    relevance_frame(data, "train", texts)
    held_out = split_examples(data, "test", "held-out evaluation")
    return {
        "n_examples": len(data.examples),
        "n_products": len(data.products),
        "rewriter_label_free": int(label_free),
        "n_rewrite_pairs": len(pairs),
        "n_test_examples": len(held_out),
    }


def label_augmented_pairs(
    dataset_dir: Path | str,
    index_dir: Path | str | None,
    teacher_relevance_dir: Path | str,
    output_dir: Path | str,
    config: DistillConfig,
    seed: int = 0,
) -> dict[str, Any]:
    """Augmented (query, product+, product-) triples labelled by the relevance teacher -> parquet."""
    from minielm.models.relevance_teacher import RelevanceTeacher
    from minielm.teachers.data import product_texts

    data = _load_data(dataset_dir)
    queries = unlabelled_queries(data)
    index = _index(index_dir, data)
    triples = build_triples(
        queries,
        data.products,
        index.search,
        triples_per_query=config.relevance.triples_per_query,
        sources=config.relevance.triple_sources,
        retrieval_depth=config.relevance.retrieval_depth,
        seed=seed,
    )
    teacher = RelevanceTeacher.load(teacher_relevance_dir, temperature=config.relevance.soft_label_temperature)
    labelled = label_triples(triples, product_texts(data), teacher)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / TRIPLES_FILE
    labelled.to_parquet(path, index=False)
    summary = {
        "triples_path": str(path),
        "n_triples": len(labelled),
        "n_queries": len(queries),
        "teacher_version": teacher.version,
        "soft_label_temperature": teacher.temperature,
        "mean_margin": float(labelled["margin"].mean()),
        "by_source": {k: int(v) for k, v in labelled["source"].value_counts().items()},
    }
    log.info("augmented pairs labelled", **summary)
    return summary


def distill_relevance_student(
    dataset_dir: Path | str,
    triples_path: Path | str,
    output_dir: Path | str,
    config: DistillConfig,
    seed: int = 0,
    teacher_relevance_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train the cross-encoder on the labelled triples; the student lands in ``output_dir/model``.
    ``teacher_relevance_dir`` is read only when ``distill.relevance.teacher_layers`` starts the student there."""
    from minielm.distill.relevance_student import distill_relevance, new_relevance_student
    from minielm.teachers.data import product_texts

    triples_path = Path(triples_path)
    if not triples_path.is_file():
        raise AugmentedDataError(f"labelled triples {triples_path} do not exist (run the labelling stage first)")
    labelled = pd.read_parquet(triples_path)
    validate_labelled_triples(labelled)
    data = _load_data(dataset_dir)
    gold = None
    if config.relevance.gold_mix_weight > 0:
        from minielm.teachers.data import split_examples

        gold = split_examples(data, "train", "gold relevance labels")[["query", "product_id", "esci_label"]]
    student = new_relevance_student(config.relevance, teacher_relevance_dir)
    output_dir = Path(output_dir)
    result = distill_relevance(
        student, labelled, product_texts(data), config, work_dir=output_dir / "work", gold=gold, seed=seed
    )
    model_dir = student.save(output_dir / MODEL_SUBDIR)
    summary = {
        "model_dir": str(model_dir),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "first_loss": _mean(result.losses[:5]),
        "final_loss": _mean(result.losses[-5:]),
        "n_triples": result.n_triples,
        "parameters": sum(p.numel() for p in student.model.parameters()),
    }
    (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 5) if values else None


def distill_rewriter_student(
    dataset_dir: Path | str,
    teacher_rewriter_dir: Path | str,
    output_dir: Path | str,
    config: DistillConfig,
    seed: int = 0,
    student_tokenizer_dir: Path | str | None = None,
    index_dir: Path | str | None = None,
    eval_config: EvalConfig | None = None,
) -> dict[str, Any]:
    """Distil the teacher rewriter on the train split's queries; the student lands in ``output_dir/model``.

    ``student_tokenizer_dir``: a tokenizer the student must use; it is checked against the teacher's
    before anything else runs. Like the teacher, the student then gets its own confidence threshold
    for selective rewriting, calibrated on the validation split (below it, the query is kept as typed).
    """
    from minielm.distill.rewriter_student import distill_rewriter
    from minielm.models.rewriter import CausalRewriter
    from minielm.models.tokenizer import load_tokenizer

    student_tokenizer = load_tokenizer(student_tokenizer_dir) if student_tokenizer_dir else None
    data = _load_data(dataset_dir)
    queries = unlabelled_queries(data)
    teacher = CausalRewriter.load(teacher_rewriter_dir, max_new_tokens=config.rewriter.max_new_tokens)
    output_dir = Path(output_dir)
    result = distill_rewriter(
        teacher,
        queries,
        config,
        work_dir=output_dir / "work",
        seed=seed,
        student_tokenizer=student_tokenizer,
        vocabulary_texts=[*queries, *data.products[PRODUCT_TITLE].astype(str)],
    )
    calibration = _calibrate(result.student, data, index_dir, eval_config or EvalConfig(), config)
    result.student.version = "unregistered"
    model_dir = result.student.save(
        output_dir / MODEL_SUBDIR,
        metadata={"role": "student-rewriter", "teacher_version": teacher.version, **calibration, **result.build},
    )
    summary = {
        "model_dir": str(model_dir),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "first_loss": _mean(result.losses[:5]),
        "final_loss": _mean(result.losses[-5:]),
        "n_queries": result.n_queries,
        "teacher_version": teacher.version,
        "parameters": result.build["student_parameters"],
        "teacher_parameters": result.build["teacher_parameters"],
        "layer_map": result.build["layer_map"],
        "min_confidence": calibration["min_confidence"],
    }
    (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _calibrate(student, data, index_dir, eval_config: EvalConfig, config: DistillConfig) -> dict[str, Any]:
    """The teacher trainer's calibration, applied to the student (no validation split: it abstains)."""
    from minielm.teachers.abstention import calibrate_min_confidence

    calibration = calibrate_min_confidence(
        student,
        data,
        config.rewriter.calibration_split,
        config.rewriter.calibration_queries,
        eval_config.top_k,
        eval_config.substitute_is_relevant,
        _index(index_dir, data),
    )
    student.min_confidence = calibration["min_confidence"]
    return calibration


def evaluate_students(
    dataset_dir: Path | str,
    index_dir: Path | str | None,
    teacher_rewriter_dir: Path | str,
    student_rewriter_dir: Path | str,
    teacher_relevance_dir: Path | str,
    student_relevance_dir: Path | str,
    eval_config: EvalConfig,
    serving: ServingConfig,
    split: str = "test",
    max_queries: int = 300,
    max_pairs: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The held-out quality report of both pairs (teacher vs student), with the printable table.

    Both rewriters generate as the server would serve them (``serving``: backend, runaway cap), so the gate
    judges the rewrites shoppers would get; a directory without a CTranslate2 export gets one here, which
    registration then keeps (the registry holds the export that was judged)."""
    from minielm.baseline import PhraseTableRewriter
    from minielm.models.cross_encoder import CrossEncoderScorer
    from minielm.models.loading import load_model_dir
    from minielm.models.relevance_teacher import RelevanceTeacher
    from minielm.teachers.data import product_texts, relevance_frame, split_examples

    data = _load_data(dataset_dir)
    examples = split_examples(data, split, "distillation evaluation")
    index = _index(index_dir, data)
    rewriters = evaluate_rewriters(
        index,
        examples,
        load_model_dir(Path(teacher_rewriter_dir), "rewriter", serving),
        load_model_dir(Path(student_rewriter_dir), "rewriter", serving),
        k=eval_config.top_k,
        substitute_is_relevant=eval_config.substitute_is_relevant,
        max_queries=max_queries,
        baseline=PhraseTableRewriter.fit(data.products, data.examples),
    )
    frame = relevance_frame(data, split, product_texts(data), limit=max_pairs, seed=seed)
    relevance = evaluate_relevance(
        frame,
        {
            "teacher": RelevanceTeacher.load(teacher_relevance_dir),
            "student": CrossEncoderScorer.load(student_relevance_dir),
        },
        k=eval_config.top_k,
    )
    from minielm.teachers.relevance_baselines import baseline_metrics

    majority, bm25 = baseline_metrics(
        index, relevance_frame(data, "train", product_texts(data)), frame, eval_config.top_k
    )
    relevance["systems"]["bm25"] = bm25
    relevance["majority"] = majority
    report = {
        "split": split,
        "rewriter": rewriters,
        "relevance": relevance,
        "table": format_quality_table(rewriters, relevance),
    }
    log.info(
        "students evaluated",
        rewriter_gain_share=rewriters["student_keeps_teacher_gain"],
        relevance_student_ndcg=relevance["systems"]["student"][f"ndcg@{eval_config.top_k}"],
        relevance_teacher_ndcg=relevance["systems"]["teacher"][f"ndcg@{eval_config.top_k}"],
    )
    return report


def production_rewriter_metrics(registry, name: str) -> dict[str, Any] | None:
    """The production student's held-out rewriter metrics, from its registry metadata (None if none)."""
    entry = registry.stage(name, "production")
    if entry is None:
        return None
    return entry.metadata.get("metrics", {}).get("rewriter", {}).get("systems", {}).get("student")


def gate_students(
    report: dict[str, Any], production: dict[str, Any] | None, gate: GateConfig, config: DistillConfig
) -> dict[str, Any]:
    """Rewriter: the platform's quality gate (beat raw and the baseline, harm within target, no
    regression vs production). Relevance: the student's nDCG may trail the teacher's by at most
    ``distill.relevance.max_ndcg_gap``."""
    from minielm.gate import quality_gate

    systems = report["rewriter"]["systems"]
    harm = (report["rewriter"].get("harm") or {}).get("student")
    rewriter = quality_gate(
        systems["student"],
        systems["raw"],
        production,
        gate,
        baseline=systems.get("baseline"),
        harm_rate=harm["harm_rate"] if harm else None,
    )
    k = report["relevance"]["k"]
    student_ndcg = report["relevance"]["systems"]["student"][f"ndcg@{k}"]
    teacher_ndcg = report["relevance"]["systems"]["teacher"][f"ndcg@{k}"]
    relevance_ok = student_ndcg >= teacher_ndcg - config.relevance.max_ndcg_gap
    relevance_reason = (
        f"relevance student nDCG@{k} {student_ndcg:.4f} vs teacher {teacher_ndcg:.4f} "
        f"(allowed gap {config.relevance.max_ndcg_gap})"
    )
    passed = rewriter.passed and relevance_ok
    return {
        "passed": passed,
        "rewriter": rewriter.as_dict(),
        "relevance": {"passed": relevance_ok, "reasons": [relevance_reason]},
        "reasons": rewriter.reasons + [relevance_reason],
    }


def register_students(
    settings: Settings,
    store,
    student_rewriter_dir: Path | str,
    student_relevance_dir: Path | str,
    report: dict[str, Any],
    gate: dict[str, Any],
    stage: str = "candidate",
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register each student whose own gate passed and point ``stage`` at it.

    The two students are separate models served separately, so a relevance student that trails its
    teacher does not hold back a rewriter that passed (and the reverse)."""
    from minielm.registry import ModelRegistry

    registry = ModelRegistry(store)
    names = settings.models
    common = {"gate": gate, "split": report["split"], **(extra_metadata or {})}
    candidates = {
        "student_rewriter": (
            names.student_rewriter,
            student_rewriter_dir,
            gate["rewriter"]["passed"],
            {"role": "student-rewriter", "metrics": {"rewriter": report["rewriter"]}},
        ),
        "student_relevance": (
            names.student_relevance,
            student_relevance_dir,
            gate["relevance"]["passed"],
            {"role": "student-relevance", "metrics": {"relevance": report["relevance"]}},
        ),
    }
    outcome: dict[str, Any] = {"stage": stage, "reasons": gate["reasons"]}
    for key, (name, model_dir, passed, metadata) in candidates.items():
        if not passed:
            log.warning("quality gate failed: student not registered", model=name, reasons=gate["reasons"])
            outcome[f"{key}_version"] = None
            continue
        entry = registry.register(name, Path(model_dir), {**metadata, **common})
        registry.promote(entry.name, entry.version, stage, reason="distillation passed the quality gate")
        outcome[f"{key}_version"] = entry.version
    outcome["registered"] = all(outcome[f"{key}_version"] for key in candidates)
    return outcome


def register_baseline_rewriter(
    settings: Settings, store, dataset_dir: Path | str, out_dir: Path | str, report: dict[str, Any], reason: str
) -> str:
    """Fit the phrase-table + spelling baseline on ``dataset_dir``, register it under the rewriter's name
    and make it production; the version.

    For a registry with no production rewriter after every learned student failed its gate: the baseline
    is the strongest system the gate measured them against, so it serves until a student beats it (the
    gate is not involved: nothing that failed it is promoted)."""
    from minielm.baseline import MODEL_CLASS, PhraseTableRewriter
    from minielm.data.esci import load_esci
    from minielm.registry import ModelRegistry

    data = load_esci(dataset_dir)
    model_dir = PhraseTableRewriter.fit(data.products, data.examples).save(out_dir)
    baseline_metrics = report["rewriter"]["systems"].get("baseline")
    registry = ModelRegistry(store)
    entry = registry.register(
        settings.models.student_rewriter,
        Path(model_dir),
        {
            "model_class": MODEL_CLASS,
            "role": "baseline-rewriter",
            "metrics": {"rewriter": {"systems": {"student": baseline_metrics}}},
            "split": report["split"],
        },
    )
    registry.promote(entry.name, entry.version, "production", reason=reason)
    log.warning("serving the baseline rewriter", model=entry.name, version=entry.version, reason=reason)
    return entry.version
