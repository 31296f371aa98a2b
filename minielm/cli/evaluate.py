"""``minielm eval``: raw, the phrase-table baseline and the oracle next to any rewrites or models.

Writes the JSON report and a self-contained HTML report beside it (:mod:`minielm.eval_report`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from minielm.cli.common import OutputFormat, OutputFormatOption, emit, fail, settings_from
from minielm.cli.data import default_dataset_dir, default_index_dir
from minielm.data.esci import SPLIT, SPLITS, EsciData, EsciFormatError, load_esci
from minielm.eval_report import write_html_report
from minielm.evaluation import (
    format_report_table,
    oracle_queries,
    quality_report,
    raw_queries,
    real_queries_safety,
    real_query_strings,
)
from minielm.search import SearchIndex


def _read_rewrites(path: Path) -> dict[str, str]:
    """A JSON object {query_id: rewrite} or JSON lines with query_id and rewrite fields."""
    text = path.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        return {str(k): str(v) for k, v in document.items()}
    rewrites = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rewrites[str(row["query_id"])] = str(row["rewrite"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise fail(f"{path}:{number}: expected a JSON object with 'query_id' and 'rewrite'") from None
    return rewrites


def _named_paths(values: list[str], option: str) -> dict[str, Path]:
    named = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise fail(f"{option}: expected NAME=PATH, got {value!r}")
        if not Path(path).exists():
            raise fail(f"{option}: {path} does not exist")
        named[name] = Path(path)
    return named


def _index(index: Path | None, settings, dataset: EsciData) -> SearchIndex:
    index_dir = index or default_index_dir(settings)
    if (index_dir / "minielm_index.json").is_file():
        search_index = SearchIndex.load(index_dir)
        if len(search_index) != len(dataset.products):
            raise fail(
                f"--index: {index_dir} holds {len(search_index)} products but the catalog has "
                f"{len(dataset.products)}; rebuild it with `minielm data index`"
            )
        return search_index
    if index is not None:
        raise fail(f"--index: {index} is not a saved index (run `minielm data index`)")
    return SearchIndex.build(dataset.products, show_progress=True)


def format_breakdown(report: dict[str, Any]) -> str:
    """Seen vs unseen noise, harm rate and real-query safety per system, one line each."""
    lines = [f"{'system':<12} {'unseen':>8} {'seen':>8} {'harm':>7} {'real safe':>10}"]
    for name in report["systems"]:
        novelty = report.get("by_novelty", {}).get(name, {})
        harm = (report.get("harm", {}).get(name) or {}).get("harm_rate")
        safe = (report.get("real_queries", {}).get(name) or {}).get("safe_share")

        def number(group: str, novelty: dict = novelty) -> str:
            value = novelty.get(group, {}).get("relevant_per_query")
            return f"{value:.3f}" if value is not None else "n/a"

        lines.append(
            f"{name:<12} {number('unseen'):>8} {number('seen'):>8} "
            f"{'n/a' if harm is None else f'{harm:.1%}':>7} {'n/a' if safe is None else f'{safe:.1%}':>10}"
        )
    return "\n".join(lines)


def eval_command(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="ESCI dir (default <paths.data_dir>/synthetic)."),
    index: Path | None = typer.Option(
        None, "--index", help="Saved index (default <paths.data_dir>/index; built from the catalog when absent)."
    ),
    split: str | None = typer.Option("test", help="Split to evaluate: train, validation, test or 'all'."),
    k: int | None = typer.Option(None, "--k", min=1, help="Top k (default: the eval.top_k setting)."),
    substitute_is_relevant: bool | None = typer.Option(
        None, "--substitute-is-relevant/--exact-only", help="Count Substitutes as relevant (default: the setting)."
    ),
    rewrites: list[str] = typer.Option(
        [],
        "--rewrites",
        help="NAME=FILE of rewrites (JSON {query_id: text} or JSONL with query_id, rewrite); repeatable.",
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        help="NAME=DIR of a saved rewriter (CausalRewriter or phrase-table baseline), generating as the server "
        "does (the serving.* settings: backend, runaway cap); repeatable.",
    ),
    real_queries: Path | None = typer.Option(
        None,
        "--real-queries",
        help="Dir of the ESCI sample (esci_us_queryset.json, ubi_queries_events.ndjson): adds each system's "
        "safe share on those real query strings.",
    ),
    output: Path | None = typer.Option(
        None, "--output", help="JSON report path (default <paths.reports_dir>/eval.json; the HTML report beside it)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Score raw queries, the phrase-table + spelling baseline, oracle rewrites and given rewrites or
    models by relevant products per query @k, per noise class and for seen vs unseen noise, with
    the harm rate; prints tables and writes a JSON report and an HTML report beside it. A model
    generates exactly as the server would serve it (``settings.serving``).
    """
    from minielm.baseline import PhraseTableRewriter
    from minielm.models.loading import ModelLoadError, load_model_dir

    settings = settings_from(ctx)
    data = data or default_dataset_dir(settings)
    k = k or settings.eval.top_k
    substitute = settings.eval.substitute_is_relevant if substitute_is_relevant is None else substitute_is_relevant
    if split not in (*SPLITS, "all"):
        raise fail(f"--split: expected one of {', '.join(SPLITS)} or all, got {split!r}")
    rewrite_files = _named_paths(rewrites, "--rewrites")
    model_dirs = _named_paths(model, "--model")
    if real_queries is not None and not real_queries.is_dir():
        raise fail(f"--real-queries: {real_queries} is not a directory")
    try:
        dataset = load_esci(data)
    except EsciFormatError as error:
        raise fail(str(error)) from None
    examples = dataset.examples if split == "all" else dataset.examples[dataset.examples[SPLIT] == split]
    if examples.empty:
        raise fail(f"--split {split}: {data} has no examples in that split")
    search_index = _index(index, settings, dataset)
    baseline = PhraseTableRewriter.fit(dataset.products, dataset.examples)
    systems: dict = {"raw": raw_queries(examples), "baseline": baseline}
    if "canonical_query" in examples.columns:
        systems["oracle"] = oracle_queries(examples)
    for name, path in rewrite_files.items():
        systems[name] = _read_rewrites(path)
    for name, path in model_dirs.items():
        try:
            systems[name] = load_model_dir(path, "rewriter", settings.serving)  # judged as it would be served
        except ModelLoadError as error:
            raise fail(f"--model {name}: {error}") from None
    try:
        report = quality_report(search_index, examples, systems, k, substitute)
    except ValueError as error:
        raise fail(str(error)) from None
    if real_queries is not None:
        try:
            strings = real_query_strings(real_queries)
        except (EsciFormatError, OSError, KeyError) as error:
            raise fail(f"--real-queries: {error}") from None
        report["real_queries"] = {
            name: real_queries_safety(source, strings)
            for name, source in systems.items()
            if not isinstance(source, dict)  # fixed rewrites cover only the benchmark's query ids
        }
        report["real_queries"]["raw"] = real_queries_safety(lambda queries: list(queries), strings)
    output = output or Path(settings.paths.reports_dir) / "eval.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report["data"], report["split"] = str(data), split
    report["command"] = " ".join(["minielm", *sys.argv[1:]]) if sys.argv else None
    output.write_text(json.dumps(report, indent=2))
    html = write_html_report(report, output.with_suffix(".html"))
    text = f"{format_report_table(report)}\n{format_breakdown(report)}\nreport written to {output} and {html}"
    emit(report, output_format, text)


def register(root: typer.Typer) -> None:
    root.command("eval")(eval_command)
