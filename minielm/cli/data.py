"""``minielm data generate|index|load-esci|sample|upload``: the data spine (``minielm eval``: cli/evaluate.py)."""

from __future__ import annotations

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
