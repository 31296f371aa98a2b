"""Stage function: fine-tune the rewriter teacher and evaluate it with the search-based metrics.

The data is validated before any model is built. Training runs through the DeepSpeed core
(:func:`minielm.training.engine.train`), resumes from ``output_dir/checkpoints`` after a kill, and
exports to ``output_dir/final``, which :meth:`CausalRewriter.load` and transformers both read.
The evaluation compares, on the eval split, the relevant products per query that the search index
returns for the raw queries, the teacher's rewrites and the oracle rewrites.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from minielm.baseline import PhraseTableRewriter, out_of_fold_rewrites
from minielm.data.esci import CANONICAL_QUERY, EsciData
from minielm.logs import get_logger
from minielm.models.backbones import causal_lm
from minielm.models.product_type_resolver import ProductTypeResolver
from minielm.models.rewrite_guard import RewriteGuard
from minielm.models.rewriter import (
    GUARD_FILE,
    MODEL_CLASS,
    CausalRewriter,
    answer_token_loss,
    collate_rewrite_examples,
    encode_rewrite_example,
    save_front_end,
)
from minielm.models.tokenizer import load_tokenizer
from minielm.teachers.abstention import calibrate_min_confidence, harm_report, leave_alone_ids
from minielm.teachers.common import TeacherRun, is_main_process, run_tokenizer, write_metrics, write_model_metadata
from minielm.teachers.config import RewriterTeacherConfig
from minielm.teachers.data import (
    TeacherDataError,
    data_fingerprint,
    load_teacher_data,
    product_texts,
    rewrite_pairs,
    split_examples,
)

log = get_logger(__name__)


def evaluate_rewriter(
    rewriter: CausalRewriter,
    data: EsciData,
    split: str,
    max_queries: int,
    k: int,
    substitute_is_relevant: bool = False,
    index=None,
) -> dict[str, Any]:
    """Relevant products per query (and nDCG, recall, zero-result rate) for raw, teacher and oracle queries."""
    from minielm.evaluation import compare_rewriters, oracle_queries, raw_queries
    from minielm.search import SearchIndex

    examples = split_examples(data, split, "rewriter evaluation")
    raw = raw_queries(examples)
    keep = sorted(raw)[:max_queries]
    examples = examples[examples["query_id"].astype(str).isin(keep)]
    raw = {q: raw[q] for q in keep}
    index = index if index is not None else SearchIndex.build(data.products)
    started = time.perf_counter()
    rewritten = [r[0] for r in rewriter.rewrite([raw[q] for q in keep])]
    generation_s = time.perf_counter() - started
    teacher = dict(zip(keep, rewritten))
    systems: dict[str, Any] = {"raw": raw, "teacher": teacher}
    if CANONICAL_QUERY in examples.columns and examples[CANONICAL_QUERY].notna().all():
        systems["oracle"] = oracle_queries(examples)
    report = compare_rewriters(index, examples, systems, k=k, substitute_is_relevant=substitute_is_relevant)
    metrics: dict[str, Any] = {
        "k": k,
        "split": split,
        "n_queries": len(keep),
        "generation_queries_per_s": round(len(keep) / max(generation_s, 1e-9), 2),
    }
    for system, values in report["systems"].items():
        for name, value in values.items():
            metrics[f"{system}_{name}"] = value
    metrics["gain_over_raw"] = report["gain_over_raw"]["teacher"]["relevant_per_query"]
    metrics["rewrite_rate"] = sum(teacher[q] != " ".join(raw[q].split()) for q in keep) / len(keep)
    harm_ids, harm_set = leave_alone_ids(examples)
    harm = harm_report(raw, teacher, harm_ids)
    metrics.update(harm_rate=harm["harm_rate"], harm_queries=harm["harm_queries"], harm_set=harm_set)
    metrics["harmed_examples"] = harm["harmed_examples"]
    if "oracle" in systems:
        oracle = systems["oracle"]
        metrics["exact_match"] = sum(teacher[q] == " ".join(oracle[q].split()) for q in keep) / len(keep)
        metrics["raw_exact_match"] = sum(raw[q] == oracle[q] for q in keep) / len(keep)
    metrics["examples"] = [
        {"query": raw[q], "teacher": teacher[q], "oracle": systems.get("oracle", {}).get(q)} for q in keep[:5]
    ]
    return metrics


def train_rewriter_teacher(
    data: EsciData | Path | str,
    output_dir: Path | str,
    config: RewriterTeacherConfig,
    *,
    cache_dir: Path | str = ".cache/models",
    index_dir: Path | str | None = None,
    top_k: int = 10,
    substitute_is_relevant: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    init_from: Path | str | None = None,
) -> TeacherRun:
    """Validate the data, fine-tune, export to ``output_dir/final`` and evaluate; resumable.

    ``init_from``: a rewriter directory (weights and tokenizer) to train further instead of the backbone.
    With ``config.front_end == "baseline"`` the LM trains on (baseline rewrite of the noisy query ->
    canonical rewrite): the baseline is fitted on the train split and saved with the model.
    """
    from minielm.training.engine import train

    output_dir = Path(output_dir)
    dataset = load_teacher_data(data)
    pairs = rewrite_pairs(dataset, config.train_split, identity_pairs=config.identity_pairs)
    split_examples(dataset, config.eval_split, "rewriter evaluation")
    log.info("rewriter teacher config", **config.model_dump(mode="json"))
    catalog_texts = list(product_texts(dataset).values())
    front_end = fit_front_end(dataset, config)
    lm_pairs = front_end_pairs(dataset, pairs, front_end, config) if front_end is not None else pairs
    corpus = [q for pair in lm_pairs for q in pair] + catalog_texts
    torch.manual_seed(config.training.seed)
    if init_from is not None:
        tokenizer = load_tokenizer(init_from)
        model = AutoModelForCausalLM.from_pretrained(str(init_from), dtype=torch.float32)
    else:
        tokenizer = run_tokenizer(output_dir, config.backbone, corpus, Path(cache_dir), config.tiny.vocab_size)
        model = causal_lm(config.backbone, tokenizer, cache_dir, config.tiny)
    encoded = [
        encode_rewrite_example(tokenizer, q, r, config.max_prompt_tokens, config.max_answer_tokens) for q, r in lm_pairs
    ]
    result = train(
        model,
        answer_token_loss,
        config.training,
        output_dir,
        dataset=encoded,
        collate_fn=partial(collate_rewrite_examples, pad_token_id=tokenizer.pad_token_id),
        tokenizer=tokenizer,
        on_step=on_step,
        description="teacher-rewriter",
    )
    metrics: dict[str, Any] = {}
    if is_main_process():
        from minielm.search import SearchIndex

        guard = RewriteGuard.from_texts(catalog_texts + [r for _, r in pairs], pairs) if config.intent_guard else None
        rewriter = CausalRewriter.load(
            result.export_dir,
            batch_size=config.eval_batch_size,
            max_new_tokens=config.max_answer_tokens + 1,
            guard=guard,
            front_end=front_end,
        )
        index = SearchIndex.load(index_dir) if index_dir else SearchIndex.build(dataset.products)
        calibration: dict[str, Any] = {"min_confidence": 0.0}
        if config.selective_rewriting:
            calibration = calibrate_min_confidence(
                rewriter,
                dataset,
                config.calibration_split,
                config.max_eval_queries,
                top_k,
                substitute_is_relevant,
                index,
                max_harm_rate=config.calibration_max_harm_rate,
            )
            rewriter.min_confidence = calibration["min_confidence"]
        metrics = evaluate_rewriter(
            rewriter, dataset, config.eval_split, config.max_eval_queries, top_k, substitute_is_relevant, index=index
        )
        metrics.update(calibration)
        metrics.update({f"train_{k}": v for k, v in result.summary().items()})
        metadata = {
            "model_class": MODEL_CLASS,
            "role": "teacher-rewriter",
            "backbone": config.backbone,
            "min_confidence": rewriter.min_confidence,
            "metrics": {k: v for k, v in metrics.items() if k not in ("examples", "harmed_examples")},
            "data_hash": data_fingerprint(pairs),
            "config": config.model_dump(mode="json"),
            "n_train_pairs": len(pairs),
            **save_front_end(result.export_dir, front_end),
        }
        write_model_metadata(result.export_dir, metadata)
        if guard is not None:
            guard.save(result.export_dir / GUARD_FILE)
        write_metrics(output_dir, metrics)
        log.info(
            "rewriter teacher evaluated",
            **{k: v for k, v in metrics.items() if k not in ("examples", "harmed_examples")},
        )
    return TeacherRun(
        name="teacher-rewriter",
        model_dir=Path(output_dir) / "final",
        metrics=metrics,
        train=result.summary(),
        metadata={"backbone": config.backbone},
    )


def fit_front_end(dataset: EsciData, config: RewriterTeacherConfig) -> PhraseTableRewriter | None:
    """The rule-based front end the LM reads through (``config.front_end``), fitted on the train split."""
    if config.front_end == "none":
        return None
    train = dataset.examples[dataset.examples["split"] == config.train_split]
    resolver = None
    if config.front_end_type_similarity is not None:
        resolver = ProductTypeResolver.fit(dataset.products, min_similarity=config.front_end_type_similarity)
    return PhraseTableRewriter.fit(dataset.products, train, version="front-end", type_resolver=resolver)


def front_end_pairs(
    dataset: EsciData, pairs: list[tuple[str, str]], front_end: PhraseTableRewriter, config: RewriterTeacherConfig
) -> list[tuple[str, str]]:
    """(front end's rewrite of the noisy query -> canonical rewrite): what the cascade's LM trains on.
    With ``front_end_folds > 1`` a noisy query is rewritten by a table mined from the other folds."""
    held_out: dict[str, str] = {}
    if config.front_end_folds > 1:
        train = dataset.examples[dataset.examples["split"] == config.train_split]
        held_out = out_of_fold_rewrites(front_end.vocabulary, train, config.front_end_folds)
    inputs = [held_out[q] if q in held_out else front_end.rewrite_one(q) for q, _ in pairs]
    lm_pairs = list(zip(inputs, [r for _, r in pairs]))
    solved = [pair for pair in lm_pairs if pair[0] == pair[1]]
    residual = [pair for pair in lm_pairs if pair[0] != pair[1]]
    log.info(
        "cascade pairs: the LM reads the baseline's rewrites",
        pairs=len(pairs),
        folds=config.front_end_folds,
        changed_by_front_end=sum(a != q for a, (q, _) in zip(inputs, pairs)),
        already_canonical=len(solved),
    )
    ratio = config.front_end_solved_ratio
    if ratio is not None and len(solved) > ratio * len(residual):
        keep = np.random.default_rng(config.training.seed).permutation(len(solved))[: int(ratio * len(residual))]
        lm_pairs = residual + [solved[i] for i in sorted(keep)]
        log.info("cascade pairs subsampled", residual=len(residual), solved_kept=len(keep))
    return lm_pairs


def uses_label_free(data: EsciData | Path | str, config: RewriterTeacherConfig) -> bool:
    """Whether this run trains label-free: forced by ``config.label_free``, or (auto) when the data has no
    ``canonical_query`` column."""
    if config.label_free != "auto":
        return config.label_free == "on"
    if isinstance(data, EsciData):
        columns = data.examples.columns
    else:
        import pyarrow.parquet as pq

        from minielm.data.esci import EXAMPLES_FILE

        path = Path(data) / EXAMPLES_FILE
        if not path.is_file():
            return False  # the loader names the missing file
        columns = pq.read_schema(path).names
    return CANONICAL_QUERY not in columns


def train_rewriter(
    data: EsciData | Path | str,
    output_dir: Path | str,
    config: RewriterTeacherConfig,
    *,
    cache_dir: Path | str = ".cache/models",
    index_dir: Path | str | None = None,
    top_k: int = 10,
    substitute_is_relevant: bool = False,
    scorer=None,
    init_from: Path | str | None = None,
) -> TeacherRun:
    """The rewriter teacher, supervised (canonical rewrites) or label-free (verified candidates); the
    model lands in ``output_dir/final`` either way. ``scorer``: a relevance model that judges retrieved
    products the data did not judge (label-free only). ``init_from``: a rewriter directory to train further
    (supervised only)."""
    if not uses_label_free(data, config):
        return train_rewriter_teacher(
            data,
            output_dir,
            config,
            cache_dir=cache_dir,
            index_dir=index_dir,
            top_k=top_k,
            substitute_is_relevant=substitute_is_relevant,
            init_from=init_from,
        )
    if init_from is not None:
        raise TeacherDataError("init_from: label-free training starts from the backbone (train supervised to refine)")
    from minielm.teachers.label_free import LabelFreeConfig, train_label_free_rewriter

    log.info("no canonical rewrites: training the rewriter label-free", rounds=config.label_free_rounds)
    return train_label_free_rewriter(
        data,
        output_dir,
        config,
        LabelFreeConfig(top_k=top_k, substitute_is_relevant=substitute_is_relevant),
        rounds=config.label_free_rounds,
        scorer=scorer,
        index_dir=index_dir,
        cache_dir=cache_dir,
    )
