"""``minielm data generate|index|load-esci|sample`` and ``minielm eval``: the data and evaluation spine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from minielm.cli.common import (
    OutputFormat,
    OutputFormatOption,
    emit,
    existing_dir,
    fail,
    find_esci_sample,
    settings_from,
)
from minielm.config import Settings
from minielm.data.esci import SPLITS, load_esci, load_esci_sample, write_esci
from minielm.data.synthetic import generate_dataset
from minielm.evaluation import compare_rewriters, format_report_table, oracle_queries, raw_queries
from minielm.search import SearchIndex

data_app = typer.Typer(help="Generate, load and index ESCI-format shopping data.", no_args_is_help=True)


def default_dataset_dir(settings: Settings) -> Path:
    return Path(settings.paths.data_dir) / "synthetic"


def default_index_dir(settings: Settings) -> Path:
    return Path(settings.paths.data_dir) / "index"


def _summary(examples, products) -> dict:
    return {
        "queries": int(examples["query_id"].nunique()),
        "judgments": len(examples),
        "labels": {str(k): int(v) for k, v in examples["esci_label"].value_counts().items()},
        "products": len(products),
        "queries_per_split": {
            str(k): int(v) for k, v in examples.drop_duplicates("query_id")["split"].value_counts().items()
        },
    }


def _summary_text(summary: dict) -> str:
    return (
        f"{summary['queries']} queries, {summary['judgments']} judgments {summary['labels']}, "
        f"{summary['products']} products; queries per split {summary['queries_per_split']}"
    )


@data_app.command("generate")
def generate(
    ctx: typer.Context,
    products: int = typer.Option(2000, "--products", min=1, help="Number of catalog products."),
    queries: int = typer.Option(600, "--queries", min=1, help="Number of noisy queries (with canonical rewrites)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the `seed` setting)."),
    output: Path | None = typer.Option(None, "--output", help="Output dir (default <paths.data_dir>/synthetic)."),
    index: Path | None = typer.Option(None, "--index", help="Also build the BM25 index into this dir."),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Generate a synthetic catalog with noisy queries and ESCI labels, written as ESCI parquet."""
    settings = settings_from(ctx)
    output = output or default_dataset_dir(settings)
    started = time.perf_counter()
    data = generate_dataset(
        n_products=products, n_queries=queries, seed=settings.seed if seed is None else seed, show_progress=True
    )
    write_esci(data, output)
    summary = {"output": str(output), "seconds": round(time.perf_counter() - started, 1)}
    summary.update(_summary(data.examples, data.products))
    lines = [f"wrote {output} in {summary['seconds']:.1f}s: {_summary_text(summary)}"]
    if index is not None:
        SearchIndex.build(data.products, show_progress=True).save(index)
        summary["index"] = str(index)
        lines.append(f"wrote the BM25 index to {index}")
    emit(summary, output_format, "\n".join(lines))


@data_app.command("index")
def build_index(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="ESCI dir (default <paths.data_dir>/synthetic)."),
    output: Path | None = typer.Option(None, "--output", help="Index dir (default <paths.data_dir>/index)."),
    locale: str = typer.Option("us", help="Product locale to index: us, es or jp."),
    upload: bool = typer.Option(
        False, "--upload", help="Also upload it to S3 under serving.index_prefix (what a cluster's server loads)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Build the BM25 search index over a catalog's product text and save it."""
    settings = settings_from(ctx)
    if upload and not settings.serving.index_prefix:
        raise fail("--upload needs serving.index_prefix (e.g. --set serving.index_prefix=search/index)")
    data = data or default_dataset_dir(settings)
    output = output or default_index_dir(settings)
    dataset = load_esci(data, locale=locale)
    started = time.perf_counter()
    SearchIndex.build(dataset.products, show_progress=True).save(output)
    summary = {
        "products": len(dataset.products),
        "output": str(output),
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = f"indexed {summary['products']} products into {output} in {summary['seconds']:.1f}s"
    if upload:
        from minielm.storage import ObjectStore

        keys = ObjectStore(settings.s3).upload_dir(output, settings.serving.index_prefix)
        summary["uploaded"] = f"s3://{settings.s3.bucket}/{settings.serving.index_prefix}/"
        text += f"; uploaded {len(keys)} files to {summary['uploaded']}"
    emit(summary, output_format, text)


@data_app.command("load-esci")
def load_esci_command(
    data: Path = typer.Option(..., "--data", help="Dir with shopping_queries_dataset_{examples,products}.parquet."),
    locale: str = typer.Option("us", help="us, es or jp."),
    split: str | None = typer.Option(None, help="train, validation or test (default: all)."),
    small_version_only: bool = typer.Option(False, "--small-version-only", help="Keep the 'small' task subset only."),
    output: Path | None = typer.Option(
        None, "--output", help="Write the validated, filtered frames here (ESCI layout)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Load and validate the published Amazon ESCI files; optionally write a filtered copy."""
    if split is not None and split not in SPLITS:
        raise fail(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    dataset = load_esci(data, locale=locale, split=split, small_version_only=small_version_only)
    summary = {"data": str(data), "locale": locale, "split": split, **_summary(dataset.examples, dataset.products)}
    lines = [f"{data} ({locale}{', ' + split if split else ''}): {_summary_text(summary)}"]
    if output is not None:
        write_esci(dataset, output)
        summary["output"] = str(output)
        lines.append(f"wrote {output}")
    emit(summary, output_format, "\n".join(lines))


@data_app.command("sample")
def sample(
    ctx: typer.Context,
    data: Path | None = typer.Option(
        None, "--data", help="The ESCI sample dir (default: the paths.esci_sample_dir setting)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Summarise the real ESCI sample: judgments, query set and UBI query/event logs."""
    if data is not None and not data.is_dir():
        raise fail(f"--data: {data} is not a directory")
    data = data or find_esci_sample(settings_from(ctx))
    loaded = load_esci_sample(data)
    summary = {
        "data": str(data),
        "judgments": len(loaded.judgments),
        "judged_queries": int(loaded.judgments["query"].nunique()),
        "labels": {str(k): int(v) for k, v in loaded.judgments["esci_label"].value_counts().items()},
        "queryset_queries": len(loaded.queryset),
        "ubi_queries": len(loaded.ubi_queries),
        "ubi_events": len(loaded.ubi_events),
        "ubi_actions": (
            {str(k): int(v) for k, v in loaded.ubi_events["action_name"].value_counts().items()}
            if len(loaded.ubi_events)
            else {}
        ),
    }
    text = (
        f"judgments: {summary['judgments']} for {summary['judged_queries']} queries {summary['labels']}\n"
        f"query set: {summary['queryset_queries']} queries\n"
        f"UBI: {summary['ubi_queries']} queries, {summary['ubi_events']} events {summary['ubi_actions']}"
    )
    emit(summary, output_format, text)


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
    model: list[str] = typer.Option([], "--model", help="NAME=DIR of a saved CausalRewriter to run; repeatable."),
    output: Path | None = typer.Option(
        None, "--output", help="JSON report path (default <paths.reports_dir>/eval.json)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Score raw queries, oracle rewrites and given rewrites or models by relevant products per query @k.

    Also nDCG@k, recall@k and the zero-result rate; prints a table and writes a JSON report.
    """
    settings = settings_from(ctx)
    data = data or default_dataset_dir(settings)
    k = k or settings.eval.top_k
    substitute = settings.eval.substitute_is_relevant if substitute_is_relevant is None else substitute_is_relevant
    if split not in (*SPLITS, "all"):
        raise fail(f"--split: expected one of {', '.join(SPLITS)} or all, got {split!r}")
    rewrite_files = _named_paths(rewrites, "--rewrites")
    model_dirs = _named_paths(model, "--model")
    dataset = load_esci(data, split=None if split == "all" else split)
    if dataset.examples.empty:
        raise fail(f"--split {split}: {data} has no examples in that split")
    index_dir = index or default_index_dir(settings)
    if (index_dir / "minielm_index.json").is_file():
        search_index = SearchIndex.load(index_dir)
        if len(search_index) != len(dataset.products):
            raise fail(
                f"--index: {index_dir} holds {len(search_index)} products but the catalog in {data} has "
                f"{len(dataset.products)}; rebuild it with `minielm data index`"
            )
    elif index is not None:
        raise fail(f"--index: {index} is not a saved index (run `minielm data index`)")
    else:
        search_index = SearchIndex.build(dataset.products, show_progress=True)
    systems: dict = {"raw": raw_queries(dataset.examples)}
    if "canonical_query" in dataset.examples.columns:
        systems["oracle"] = oracle_queries(dataset.examples)
    for name, path in rewrite_files.items():
        systems[name] = _read_rewrites(path)
    for name, path in model_dirs.items():
        from minielm.models.rewriter import CausalRewriter

        systems[name] = CausalRewriter.load(path)
    try:
        report = compare_rewriters(search_index, dataset.examples, systems, k, substitute)
    except ValueError as error:
        raise fail(str(error)) from None
    output = output or Path(settings.paths.reports_dir) / "eval.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report["data"], report["split"] = str(data), split
    output.write_text(json.dumps(report, indent=2))
    emit(report, output_format, f"{format_report_table(report)}\nreport written to {output}")


@data_app.command("upload")
def upload(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Local folder: an ESCI dataset (examples + products parquet) or an index."),
    uri: str = typer.Argument(..., help="Destination s3://bucket/prefix (the pipeline's data_uri or index_uri)."),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Run the training pipeline's data checks first (--no-check for an index)."
    ),
) -> None:
    """Put a local folder on S3 so that a cluster pipeline run can read it (`-p data_uri=URI`)."""
    from minielm.distill.stages import validate_training_data
    from minielm.s3_uris import parse_s3_uri, upload_dir

    settings = settings_from(ctx)
    existing_dir(data, "DATA")
    parse_s3_uri(uri)  # a bad URI is an InputError (exit 2) before any check runs
    if check:
        try:
            summary = validate_training_data(data)
        except ValueError as error:  # the data checks raise InputErrors (ValueErrors) naming the column
            raise fail(f"{data}: {error} (pass --no-check to upload it anyway)") from None
        typer.echo(f"checked {data}: {summary}")
    keys = upload_dir(data, uri, settings.s3)  # S3 unreachable: ServiceError, exit 1
    typer.echo(f"uploaded {len(keys)} files to {uri}")


def register(root: typer.Typer) -> None:
    root.add_typer(data_app, name="data")
    root.command("eval")(eval_command)
