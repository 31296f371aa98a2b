"""Assemble what one server hosts from the settings: models, Feast features, the Kafka rewrite log.

Endpoints (KServe model names):
- ``settings.models.student_rewriter`` (e.g. ``student-rewriter``): query -> rewrites;
- ``settings.models.student_relevance``: query + products -> relevance (when a relevance model is given);
- ``rewrite-search``: query -> rewrite -> catalog search -> products (when an index is given).
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from minielm.config import Settings
from minielm.features.online import OnlineFeatures
from minielm.features.rewrite_cache import RewriteCache
from minielm.logs import get_logger
from minielm.registry import ModelRegistry
from minielm.storage import ObjectStore
from serving.follow import FollowedModel, RegistryFollower
from serving.loading import ModelLoadError, load_version, resolve
from serving.models import Catalog, RelevanceModel, RewriterModel, RewriteSearchModel, ServedModel
from serving.request_log import RewriteLog
from serving.server import RunningServer, serve_in_thread

log = get_logger(__name__)

PIPELINE_NAME = "rewrite-search"


@dataclass
class ServingStack:
    models: list[ServedModel]
    features: OnlineFeatures | None = None
    rewrite_log: RewriteLog | None = None
    follower: RegistryFollower | None = None
    rewrite_cache: RewriteCache | None = None
    extra: dict = field(default_factory=dict)

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self.rewrite_log is not None:
            self.rewrite_log.close()
        if self.features is not None:
            self.features.close()
        if self.rewrite_cache is not None:
            self.rewrite_cache.close()


def _load_index(index_dir: Path):
    from minielm.search import SearchIndex

    if not Path(index_dir).is_dir():
        raise ModelLoadError(f"serving.index_dir: {index_dir} does not exist")
    return SearchIndex.load(index_dir)


def _download_index(settings: Settings) -> Path:
    """Fetch the index saved under ``serving.index_prefix`` on S3 into the local data dir."""
    from minielm.storage import ObjectNotFound

    prefix = settings.serving.index_prefix
    target = Path(settings.paths.data_dir) / "serving-index"
    try:
        ObjectStore(settings.s3).download_dir(prefix, target)
    except ObjectNotFound:
        raise ModelLoadError(
            f"serving.index_prefix: s3://{settings.s3.bucket}/{prefix}/ holds no search index "
            "(upload one with `minielm data index --upload`)"
        ) from None
    return target


def index_source(settings: Settings) -> Path | None:
    """The local index dir the rewrite-search endpoint serves: serving.index_dir, else serving.index_prefix."""
    if settings.serving.index_dir is not None:
        return settings.serving.index_dir
    if settings.serving.index_prefix:
        return _download_index(settings)
    return None


def registry_follower(settings: Settings, models: list[tuple[ServedModel, str, str, Path | None]]) -> RegistryFollower:
    """Follow the stage of every model that came from the registry (local dirs are pinned)."""
    stage = settings.serving.model_stage
    followed = [
        FollowedModel(served, served.name, stage, partial(load_version, settings, served.name, role, stage=stage))
        for served, _name, role, path in models
        if path is None
    ]
    return RegistryFollower(ModelRegistry(ObjectStore(settings.s3)), followed, settings.serving.registry_poll_s)


def build_stack(
    settings: Settings,
    extra_rewriters: dict[str, Path | None] | None = None,
    with_relevance: bool = True,
    with_pipeline: bool = True,
) -> ServingStack:
    """Load every model (registry stage or local path), warm it up, and return them ready to serve.

    ``extra_rewriters`` adds more rewriter endpoints by registry name (path or None for the registry),
    e.g. the teacher next to the student for a benchmark.
    """
    config = settings.serving
    features = OnlineFeatures(settings) if config.enable_feast else None
    rewrite_log = RewriteLog(settings) if config.log_rewrites else None
    rewrite_cache = RewriteCache(settings) if settings.rewrite_cache.enabled else None
    common = dict(settings=settings, features=features, rewrite_log=rewrite_log, rewrite_cache=rewrite_cache)
    try:
        rewriter = RewriterModel(
            settings.models.student_rewriter,
            loader=partial(resolve, settings, settings.models.student_rewriter, "rewriter", config.rewriter_path),
            **common,
        )
        rewriter.load()
        models: list[ServedModel] = [rewriter]
        sources = [(rewriter, rewriter.name, "rewriter", config.rewriter_path)]
        for name, path in (extra_rewriters or {}).items():
            extra = RewriterModel(name, loader=partial(resolve, settings, name, "rewriter", path), **common)
            extra.load()
            models.append(extra)
            sources.append((extra, name, "rewriter", path))
        relevance = None
        if with_relevance:
            catalog_loader = partial(Catalog.load, config.dataset_dir) if config.dataset_dir else None
            relevance = RelevanceModel(
                settings.models.student_relevance,
                catalog_loader=catalog_loader,
                loader=partial(
                    resolve, settings, settings.models.student_relevance, "relevance", config.relevance_path
                ),
                **common,
            )
            relevance.load()
            models.append(relevance)
            sources.append((relevance, relevance.name, "relevance", config.relevance_path))
        if with_pipeline:
            index_dir = index_source(settings)
            if index_dir is None:
                raise ModelLoadError(
                    "serving.index_dir: the rewrite-search endpoint needs a search index directory "
                    "(or serving.index_prefix on S3)"
                )
            pipeline = RewriteSearchModel(
                PIPELINE_NAME,
                rewriter=rewriter,
                relevance=relevance,
                index_loader=partial(_load_index, index_dir),
                **common,
            )
            pipeline.load()
            models.append(pipeline)
    except BaseException:
        if rewrite_log is not None:
            rewrite_log.close(timeout_s=1)
        if features is not None:
            features.close()
        if rewrite_cache is not None:
            rewrite_cache.close()
        raise
    return ServingStack(
        models, features, rewrite_log, follower=registry_follower(settings, sources), rewrite_cache=rewrite_cache
    )


def serve_stack(stack: ServingStack, settings: Settings, port: int | None = None) -> RunningServer:
    """Serve a loaded stack in a background thread, following the registry; ``stop()`` also flushes the Kafka log.

    What loading left on the heap (~560k objects: torch, transformers, Feast) is frozen out of the garbage
    collector first: a full collection over it takes ~0.3 s of CPU (measured at load 12), a pause a request
    would wait out; frozen, it takes ~0.01 ms. The GIL switch interval is shortened for the generation thread
    (see ``serving.gil_switch_interval_ms``)."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(settings.serving.gil_switch_interval_ms / 1000)
    running = serve_in_thread(
        stack.models,
        host=settings.serving.host,
        port=settings.serving.http_port if port is None else port,
        on_stop=stack.close,
    )
    if stack.follower is not None:
        stack.follower.start()
    return running
