"""``minielm features apply|materialize|warm-cache``: the Feast repo of query and product features, and the
head-query rewrite cache."""

from __future__ import annotations

from pathlib import Path

import typer

from minielm.cli.common import EXIT_FAILURE, OutputFormat, OutputFormatOption, emit, existing_dir, fail, settings_from
from minielm.errors import MinielmError

features_app = typer.Typer(help="Apply the Feast repo and load features into the online store.", no_args_is_help=True)


@features_app.command("apply")
def apply(
    ctx: typer.Context,
    profile: str | None = typer.Option(
        None, help="local (sqlite + duckdb) or cluster (Redis + S3); default feast.profile."
    ),
    repo_path: Path | None = typer.Option(None, help="Applied repo directory (default feast.repo_path)."),
) -> None:
    """Write feature_store.yaml with absolute paths for the profile and register every definition."""
    from minielm.features.repo import apply_repo

    settings = settings_from(ctx).model_copy(deep=True)
    try:
        if profile is not None:
            settings.feast.profile = profile
        if repo_path is not None:
            settings.feast.repo_path = repo_path
    except ValueError as error:
        raise fail(f"--profile/--repo-path: {error}") from None
    repo = apply_repo(settings)
    typer.echo(f"applied Feast repo {repo} (profile {settings.feast.profile}, project {settings.feast.project})")


@features_app.command("materialize")
def materialize_cmd(
    ctx: typer.Context,
    data: Path | None = typer.Option(
        None, "--data", help="ESCI-layout dataset: product features from its products and judgments."
    ),
    from_feedback: bool = typer.Option(True, help="Rebuild query statistics from the feedback windows on S3."),
    days: int | None = typer.Option(None, min=1, help="Look-back in days (default feast.ttl_days)."),
) -> None:
    """Write the offline tables (products, query statistics) and load them into the online store."""
    from tqdm import tqdm

    from minielm.features.repo import materialize, write_offline_table
    from minielm.features.tables import product_feature_table, query_stats_table

    settings = settings_from(ctx)
    if data is not None:
        existing_dir(data, "--data")
    steps = tqdm(total=3, desc="features", unit="step")
    try:
        if data is not None:
            from minielm.data.esci import load_esci

            dataset = load_esci(data)
            table = product_feature_table(dataset.products, dataset.examples)
            write_offline_table(settings, "product_features.parquet", table)
            typer.echo(f"product features: {len(table)} products")
        steps.update()
        if from_feedback:
            from minielm.feedback.windows import list_windows, read_windows
            from minielm.storage import ObjectStore

            store = ObjectStore(settings.s3)
            table = query_stats_table(read_windows(store, list_windows(store)))
            write_offline_table(settings, "query_stats.parquet", table)
            typer.echo(f"query statistics: {len(table)} queries from the feedback windows")
        steps.update()
        window = materialize(settings, days=days)
        steps.update()
    except MinielmError:
        raise  # bad input or settings: the CLI maps it to its exit code
    except Exception as error:  # Feast, S3 or the offline store failed underneath
        raise fail(f"materialisation failed: {type(error).__name__}: {error}", EXIT_FAILURE) from None
    finally:
        steps.close()
    typer.echo(f"materialised {', '.join(window['views'])} from {window['start']} to {window['end']}")


@features_app.command("warm-cache")
def warm_cache(
    ctx: typer.Context,
    stage: str = typer.Option("production", help="Registry stage whose version is cached: production or candidate."),
    version: str | None = typer.Option(None, help="Cache this registered version instead of the stage's."),
    top: int | None = typer.Option(
        None, min=1, help="Most frequent queries to cache (default rewrite_cache.top_queries)."
    ),
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """After a promotion: rewrite the most frequent queries of the feedback windows with the served version
    and write them to the Feast online store, keyed by query and model version."""
    from minielm.features.rewrite_cache import warm_rewrite_cache

    if stage not in ("production", "candidate"):
        raise fail(f"--stage: expected production or candidate, got {stage!r}")
    settings = settings_from(ctx)
    if top is not None:
        settings = settings.model_copy(deep=True)
        settings.rewrite_cache.top_queries = top
    try:
        report = warm_rewrite_cache(settings, stage=stage, version=version)
    except MinielmError:
        raise
    except Exception as error:  # Feast, S3 or the model failed underneath
        raise fail(f"rewrite cache warm-up failed: {type(error).__name__}: {error}", EXIT_FAILURE) from None
    emit(
        report,
        output_format,
        f"cached {report['cached_queries']} queries for {report['model']} version {report['version']} "
        f"({report['changed_by_rewrite']} rewritten, the rest kept as typed); they made "
        f"{report['head_share_of_requests']:.1%} of the {report['requests']} requests in the feedback windows",
    )


def register(root: typer.Typer) -> None:
    root.add_typer(features_app, name="features")
