"""KServe models: the query rewriter, the relevance scorer and the rewrite -> search pipeline.

Each is a ``kserve.Model`` that is ready only after its weights are loaded and a warm-up request has
gone through (``start`` does not flip readiness). ``predict`` takes v1 (``{"instances": [...]}``) or v2
(``InferRequest``) payloads; the model work runs on the event loop's executor so one slow batch does
not stall other connections. Every response carries the model name, its version and a request id
(also in the ``x-request-id`` and ``x-model-version`` response headers); every served rewrite is
logged to Kafka. A request reads the loaded model once (:meth:`ServedModel.current`), so a version
switch (:meth:`ServedModel.switch_to`, driven by :mod:`serving.follow`) never mixes two versions in
one answer and never fails a request in flight.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from minielm.config import Settings
from minielm.features.keys import query_key
from minielm.features.online import OnlineFeatures
from minielm.features.rewrite_cache import RewriteCache
from minielm.feedback.events import ServedRewrite
from minielm.logs import get_logger
from minielm.models.interfaces import rewrite_with_scores
from minielm.rl.exploration import Exploration, ExplorationBucket
from serving.batching import RewriteBatcher, Rows
from serving.loading import LoadedModel
from serving.request_log import RewriteLog
from serving.validation import (
    Parsed,
    allowed_parameters,
    check_int,
    flag_parameter,
    num_return_parameter,
    parse_v1,
    request_id_from,
    v2_input,
    v2_parameters,
)

log = get_logger(__name__)


@dataclass
class Catalog:
    """Product ids -> title and model text, from an ESCI-layout products frame."""

    titles: dict[str, str]
    texts: dict[str, str]

    @classmethod
    def from_products(cls, products: pd.DataFrame) -> Catalog:
        from minielm.data.text import product_text

        ids = products["product_id"].astype(str).tolist()
        return cls(
            dict(zip(ids, products["product_title"].fillna("").astype(str))),
            dict(zip(ids, product_text(products).tolist())),
        )

    @classmethod
    def load(cls, dataset_dir) -> Catalog:
        from minielm.data.esci import load_esci

        return cls.from_products(load_esci(dataset_dir).products)


@dataclass(frozen=True)
class PipelineModels:
    """The versions one rewrite-search request uses."""

    rewriter: LoadedModel
    relevance: LoadedModel | None


def instance_ids(request_id: str, n: int) -> list[str]:
    """One id per query: the request id itself for one query, ``<id>.<i>`` inside a batch."""
    return [request_id] if n == 1 else [f"{request_id}.{i}" for i in range(n)]


class _NoFeatures:
    """Stands in for a lookup when enrichment is off."""

    def __init__(self, n: int) -> None:
        self.n = n

    def result(self) -> list[None]:
        return [None] * self.n


class ServedModel(Model):
    """What the three endpoints share: loading, readiness, warm-up, request ids, v1/v2 dispatch."""

    loaded: LoadedModel | None = None

    def __init__(
        self,
        name: str,
        settings: Settings,
        loader: Callable[[], LoadedModel],
        features: OnlineFeatures | None = None,
        rewrite_log: RewriteLog | None = None,
        rewrite_cache: RewriteCache | None = None,
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self.settings = settings
        self.config = settings.serving
        self._loader = loader
        self.features = features
        self.rewrite_log = rewrite_log
        self.rewrite_cache = rewrite_cache

    def start(self) -> None:
        """Readiness comes from :meth:`load` only."""

    def load(self) -> bool:
        started = time.monotonic()
        self.loaded = self._loader()
        self._after_load()
        if self.features is not None:
            try:
                self.features.warm_up()
            except Exception as error:  # Feast down at start: serve with defaults, visibly
                log.warning(
                    "feast unavailable at start; serving default features",
                    model=self.name,
                    error=f"{type(error).__name__}: {error}",
                )
        if self.rewrite_cache is not None:
            try:
                self.rewrite_cache.warm_up()
            except Exception as error:  # Feast down at start: the model answers every query, visibly
                log.warning(
                    "rewrite cache unavailable at start; the model answers every query",
                    model=self.name,
                    error=f"{type(error).__name__}: {error}",
                )
        self.warm_up()
        self.ready = True
        log.info(
            "model ready", model=self.name, version=self.loaded.version, load_s=round(time.monotonic() - started, 3)
        )
        return self.ready

    def _after_load(self) -> None:
        """Extra resources (index, catalog) once the model is in."""

    def warm_up(self, current: Any = None) -> None:
        raise NotImplementedError

    def switch_to(self, loaded: LoadedModel, warm: bool = True) -> None:
        """Warm up a newly loaded version beside the serving one, then switch in one assignment.

        Requests that already read the old version finish on it; later ones get the new one. ``warm=False``
        skips the warm-up for a version that served before and is still loaded (a rollback to the standby).
        """
        if warm:
            self.warm_up(loaded)
        gc.freeze()  # the new version's objects join those frozen at start (see serving.app.serve_stack)
        previous, self.loaded = self.loaded, loaded
        log.info("model switched", model=self.name, version=loaded.version, previous=previous and previous.version)

    def current(self) -> Any:
        """What one request uses, read once: the loaded model (name, version, weights)."""
        return self.loaded

    @property
    def version(self) -> str:
        return self.loaded.version if self.loaded else "unloaded"

    def response_version(self, current: Any) -> str:
        return current.version

    def envelope(self, request_id: str, current: Any) -> dict[str, Any]:
        return {"model_name": self.name, "model_version": current.version, "request_id": request_id}

    async def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> Any:
        is_v2 = isinstance(payload, InferRequest)
        request_id = request_id_from(headers, payload.id if is_v2 else None)
        parsed = self.parse_v2(payload) if is_v2 else self.parse_v1(payload)
        current = self.current()
        results = self.answer_from_memory(parsed, request_id, current)
        if results is None:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(None, self.infer, parsed, request_id, True, current)
        version = self.response_version(current)
        if response_headers is not None:
            response_headers["x-request-id"] = request_id
            response_headers["x-model-version"] = version
        if is_v2:
            return InferResponse(
                response_id=request_id,
                model_name=self.name,
                model_version=version,
                infer_outputs=self.v2_outputs(results),
                parameters={"request_id": request_id},
            )
        return {**self.envelope(request_id, current), "predictions": results}

    def answer_from_memory(self, parsed: Parsed, request_id: str, current: Any) -> list[dict[str, Any]] | None:
        """Results computed on the event loop without blocking, or None to run :meth:`infer` on a worker thread."""
        return None

    def parse_v1(self, payload: Any) -> Parsed:
        raise NotImplementedError

    def parse_v2(self, request: InferRequest) -> Parsed:
        raise NotImplementedError

    def infer(self, parsed: Parsed, request_id: str, log_events: bool, current: Any = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def v2_outputs(self, results: list[dict[str, Any]]) -> list[InferOutput]:
        raise NotImplementedError

    def _log(
        self,
        request_id: str,
        query: str,
        rewrite: str,
        product_ids: list[str],
        version: str,
        exploration: Exploration | None = None,
    ) -> None:
        if self.rewrite_log is None:
            return
        self.rewrite_log.submit(
            ServedRewrite(
                request_id=request_id,
                query=query,
                rewrite=rewrite,
                model_name=self.rewriter_name,
                model_version=version,
                product_ids=product_ids,
                ts=time.time(),
                **(exploration.event_fields() if exploration else {}),
            )
        )

    @property
    def rewriter_name(self) -> str:
        return self.name

    def cached_rewrites(
        self, version: str, queries: list[str], num_return: int, generate: Callable[[list[str]], Rows]
    ) -> tuple[Rows, list[bool]]:
        """Rows for ``queries`` (as ``generate`` gives them) and whether each came from the rewrite cache.

        Only single-rewrite requests use the cache, and only entries of ``version``, the version this
        request is served by; ``generate`` runs for the other queries alone.
        """
        if self.rewrite_cache is None or num_return != 1:
            return generate(queries), [False] * len(queries)
        found = self.rewrite_cache.lookup(queries, version, self.name)
        missing = [i for i, entry in enumerate(found) if entry is None]
        generated = iter(generate([queries[i] for i in missing]) if missing else [])
        rows = [[(entry.rewrite, entry.score)] if entry is not None else next(generated) for entry in found]
        return rows, [entry is not None for entry in found]

    def _start_query_features(self, queries: list[str], enabled: bool):
        """The query_stats lookup runs while the model works; ``.result()`` collects it within the budget."""
        if not enabled or self.features is None:
            return _NoFeatures(len(queries))
        return self.features.submit_query_features(queries)


def _bytes_output(name: str, rows: list[list[str]] | list[str]) -> InferOutput:
    array = np.array(rows, dtype=object)
    return InferOutput(name=name, shape=list(array.shape), datatype="BYTES", data=array.flatten().tolist())


def _fp32_output(name: str, rows) -> InferOutput:
    array = np.asarray(rows, dtype=np.float32)
    return InferOutput(name=name, shape=list(array.shape), datatype="FP32", data=array.flatten().tolist())


class QueryModel(ServedModel):
    """Endpoints whose instances are one ``query`` each, with the parameters the subclass names."""

    PARAMETERS: tuple[str, ...] = ()

    def parse_v1(self, payload: Any) -> Parsed:
        parsed = parse_v1(payload, {"query": "text"}, self.config)
        allowed_parameters(parsed.parameters, self.PARAMETERS)
        return parsed

    def parse_v2(self, request: InferRequest) -> Parsed:
        queries = v2_input(request, "query", self.config)
        parameters = v2_parameters(request)
        allowed_parameters(parameters, self.PARAMETERS)
        return Parsed([{"query": q} for q in queries], parameters)

    def warm_up(self, current: Any = None) -> None:
        self.infer(Parsed([{"query": self.config.warmup_query}]), "warm-up", False, current)


class RewriterModel(QueryModel):
    """query (+ Feast query_stats) -> ``num_return`` rewrites, batched."""

    PARAMETERS = ("num_return", "features")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batcher = RewriteBatcher(
            rewrite_with_scores, self.config.batch_window_ms / 1000, max(self.config.max_batch_size, 1)
        )

    def infer(self, parsed: Parsed, request_id: str, log_events: bool, current: Any = None) -> list[dict[str, Any]]:
        current = current or self.current()
        num_return = num_return_parameter(parsed.parameters, self.config)
        use_features = flag_parameter(parsed.parameters, "features", self.config.enable_feast)
        queries = [instance["query"] for instance in parsed.instances]
        pending = self._start_query_features(queries, use_features)
        rewrites, cached = self.cached_rewrites(
            current.version, queries, num_return, lambda batch: self.batcher(current.model, batch, num_return)
        )
        return self._results(request_id, queries, rewrites, cached, pending.result(), current, log_events)

    def answer_from_memory(self, parsed: Parsed, request_id: str, current: Any) -> list[dict[str, Any]] | None:
        """A request whose every query is a cache hit held in memory, with its Feast features held in memory too
        when it asks for them (``feast.online_memory_ttl_s``), is answered on the event loop: nothing in it
        blocks, and the hop to a worker thread would be most of its cost."""
        if self.rewrite_cache is None or num_return_parameter(parsed.parameters, self.config) != 1:
            return None
        queries = [instance["query"] for instance in parsed.instances]
        features: list[dict[str, Any] | None] = [None] * len(queries)
        if self.features is not None and flag_parameter(parsed.parameters, "features", self.config.enable_feast):
            held = self.features.held_query_features(queries)
            if held is None:
                return None
            features = held
        entries = self.rewrite_cache.memory_hits(queries, current.version, self.name)
        if entries is None:
            return None
        rows = [[(entry.rewrite, entry.score)] for entry in entries]
        return self._results(request_id, queries, rows, [True] * len(queries), features, current, True)

    def v1_answer_from_memory(self, body: bytes, client_request_id: str | None) -> tuple[bytes, dict[str, str]] | None:
        """The whole v1 response (JSON body, headers) for a request :meth:`answer_from_memory` can answer, else
        None: the server's cache-hit lane (:class:`serving.server.InferenceGuard`). A body that does not parse
        or validate is None too, so the normal path answers it with its usual error."""
        if not self.ready or self.rewrite_cache is None:
            return None
        request_id = request_id_from({"x-request-id": client_request_id} if client_request_id else None)
        current = self.current()
        try:
            results = self.answer_from_memory(self.parse_v1(msgspec.json.decode(body)), request_id, current)
        except (msgspec.DecodeError, InvalidInput):
            return None
        if results is None:
            return None
        payload = msgspec.json.encode({**self.envelope(request_id, current), "predictions": results})
        return payload, {"x-request-id": request_id, "x-model-version": current.version}

    def _results(
        self,
        request_id: str,
        queries: list[str],
        rewrites: Rows,
        cached: list[bool],
        features: list[dict[str, Any] | None],
        current: LoadedModel,
        log_events: bool,
    ) -> list[dict[str, Any]]:
        results = []
        for rid, query, row, hit, feats in zip(
            instance_ids(request_id, len(queries)), queries, rewrites, cached, features
        ):
            if log_events:
                self._log(rid, query, row[0][0], [], current.version)
            results.append(
                {
                    "request_id": rid,
                    "query": query,
                    "query_key": query_key(query),
                    "rewrites": [{"text": text, "score": score} for text, score in row],
                    "cached": hit,
                    "features": feats,
                }
            )
        return results

    def v2_outputs(self, results: list[dict[str, Any]]) -> list[InferOutput]:
        outputs = [
            _bytes_output("rewrite", [[r["text"] for r in res["rewrites"]] for res in results]),
            _bytes_output("request_id", [res["request_id"] for res in results]),
            _bytes_output("query_key", [res["query_key"] for res in results]),
        ]
        if all(r["score"] is not None for res in results for r in res["rewrites"]):
            outputs.append(_fp32_output("score", [[r["score"] for r in res["rewrites"]] for res in results]))
        return outputs


class RelevanceModel(ServedModel):
    """query + product ids (looked up in the catalog) or product texts -> relevance and E/S/C/I probabilities."""

    catalog: Catalog | None = None

    def __init__(self, *args, catalog_loader: Callable[[], Catalog] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._catalog_loader = catalog_loader

    def _after_load(self) -> None:
        self.catalog = self._catalog_loader() if self._catalog_loader else None

    def parse_v1(self, payload: Any) -> Parsed:
        parsed = parse_v1(payload, {"query": "text", "product_ids": "ids", "product_texts": "texts"}, self.config)
        allowed_parameters(parsed.parameters, ())
        for i, instance in enumerate(parsed.instances):
            if ("product_ids" in instance) == ("product_texts" in instance):
                raise InvalidInput(f"instances[{i}]: expected exactly one of product_ids or product_texts")
        return parsed

    def parse_v2(self, request: InferRequest) -> Parsed:
        queries = v2_input(request, "query", self.config)
        texts = v2_input(request, "product_text", self.config)
        if len(texts) != len(queries):
            raise InvalidInput(
                f"inputs[product_text].data: {len(texts)} texts for {len(queries)} queries; expected one per query"
            )
        allowed_parameters(v2_parameters(request), ())
        return Parsed([{"query": q, "product_texts": [t]} for q, t in zip(queries, texts)])

    def warm_up(self, current: Any = None) -> None:
        self.infer(
            Parsed([{"query": self.config.warmup_query, "product_texts": [self.config.warmup_query]}]),
            "warm-up",
            False,
            current,
        )

    def _texts(self, instance: dict[str, Any], index: int) -> list[str]:
        if "product_texts" in instance:
            return instance["product_texts"]
        if self.catalog is None:
            raise InvalidInput(
                f"instances[{index}].product_ids: this server has no catalog (serving.dataset_dir); send product_texts"
            )
        unknown = [pid for pid in instance["product_ids"] if pid not in self.catalog.texts]
        if unknown:
            raise InvalidInput(f"instances[{index}].product_ids: unknown product id {unknown[0]!r}")
        return [self.catalog.texts[pid] for pid in instance["product_ids"]]

    def infer(self, parsed: Parsed, request_id: str, log_events: bool, current: Any = None) -> list[dict[str, Any]]:
        current = current or self.current()
        texts = [self._texts(instance, i) for i, instance in enumerate(parsed.instances)]
        pair_queries = [inst["query"] for inst, group in zip(parsed.instances, texts) for _ in group]
        pair_texts = [t for group in texts for t in group]
        probabilities = (
            np.asarray(current.model.predict_proba(pair_queries, pair_texts)) if pair_texts else np.zeros((0, 4))
        )
        scores = np.asarray(current.model.score(pair_queries, pair_texts)) if pair_texts else np.zeros(0)
        results, start = [], 0
        for rid, instance, group in zip(instance_ids(request_id, len(texts)), parsed.instances, texts):
            end = start + len(group)
            result = {
                "request_id": rid,
                "query": instance["query"],
                "scores": scores[start:end].tolist(),
                "probabilities": probabilities[start:end].tolist(),
            }
            if "product_ids" in instance:
                result["product_ids"] = instance["product_ids"]
            results.append(result)
            start = end
        return results

    def v2_outputs(self, results: list[dict[str, Any]]) -> list[InferOutput]:
        return [
            _fp32_output("score", [res["scores"][0] for res in results]),
            _fp32_output("probabilities", [res["probabilities"][0] for res in results]),
            _bytes_output("request_id", [res["request_id"] for res in results]),
        ]


class RewriteSearchModel(QueryModel):
    """The whole effect for a client: rewrite the query, search the catalog, (re)rank, return products.

    The rewriter is this endpoint's model (name/version in the response and in the Kafka log); the
    relevance model, when present, adds a relevance score per product and can re-rank (``rerank``).
    """

    PARAMETERS = ("k", "features", "rerank")

    def __init__(
        self,
        name: str,
        settings: Settings,
        rewriter: RewriterModel,
        index_loader: Callable[[], Any],
        relevance: RelevanceModel | None = None,
        **kwargs,
    ) -> None:
        super().__init__(name, settings, loader=lambda: rewriter.loaded, **kwargs)
        self.rewriter = rewriter
        self.relevance = relevance
        self._index_loader = index_loader
        self.index = None
        self.exploration = ExplorationBucket(self.config.exploration_share, self.config.exploration_candidates)

    @property
    def rewriter_name(self) -> str:
        return self.rewriter.name

    def current(self) -> PipelineModels:
        """The rewriter's and relevance model's loaded versions, read once per request."""
        return PipelineModels(self.rewriter.current(), self.relevance.current() if self.relevance else None)

    def response_version(self, current: PipelineModels) -> str:
        return current.rewriter.version

    def switch_to(self, loaded: LoadedModel, warm: bool = True) -> None:
        raise RuntimeError(f"{self.name} follows its rewriter and relevance models; switch those")

    def envelope(self, request_id: str, current: PipelineModels) -> dict[str, Any]:
        envelope = {
            "model_name": self.rewriter.name,
            "model_version": current.rewriter.version,
            "request_id": request_id,
            "endpoint": self.name,
        }
        if current.relevance is not None:
            envelope["relevance_model_name"] = self.relevance.name
            envelope["relevance_model_version"] = current.relevance.version
        return envelope

    def load(self) -> bool:
        if not self.rewriter.ready or (self.relevance is not None and not self.relevance.ready):
            raise RuntimeError(f"{self.name}: load the rewriter and relevance models first")
        return super().load()

    def _after_load(self) -> None:
        self.index = self._index_loader()

    def infer(self, parsed: Parsed, request_id: str, log_events: bool, current: Any = None) -> list[dict[str, Any]]:
        current = current or self.current()
        k = check_int(parsed.parameters.get("k", self.config.search_k), "parameters.k", 1, self.config.search_k)
        use_features = flag_parameter(parsed.parameters, "features", self.config.enable_feast)
        rerank = flag_parameter(parsed.parameters, "rerank", self.relevance is not None)
        queries = [instance["query"] for instance in parsed.instances]
        pending = self._start_query_features(queries, use_features)
        ids = instance_ids(request_id, len(queries))
        rows, cached = self.cached_rewrites(
            current.rewriter.version,
            queries,
            1,
            lambda batch: [[(row[0], None)] for row in current.rewriter.model.rewrite(batch, num_return=1)],
        )
        rewrites = [row[0][0] for row in rows]
        # The exploration bucket: a few logged requests get a guarded non-greedy rewrite (minielm.rl.exploration).
        explored = [None] * len(queries)
        if log_events and self.rewrite_log is not None:
            explored = self.exploration.explore(current.rewriter.model, ids, queries, rewrites)
            rewrites = [e.rewrite if e else r for e, r in zip(explored, rewrites)]
        query_features = pending.result()
        hits = self.index.search_with_scores(rewrites, k)
        catalog = self.relevance.catalog if self.relevance is not None else None
        results = []
        for rid, query, rewrite, hit, row, feats, exploration in zip(
            ids, queries, rewrites, cached, hits, query_features, explored
        ):
            products = [{"product_id": pid, "search_score": float(score)} for pid, score in row]
            if catalog is not None:
                for product in products:
                    product["title"] = catalog.titles.get(product["product_id"], "")
            if current.relevance is not None and catalog is not None and products:
                texts = [catalog.texts.get(p["product_id"], p.get("title", "")) for p in products]
                relevance = np.asarray(current.relevance.model.score([query] * len(texts), texts))
                for product, value in zip(products, relevance.tolist()):
                    product["relevance"] = value
                if rerank:
                    products.sort(key=lambda p: -p["relevance"])
            if use_features and self.features is not None and products:
                for product, pf in zip(products, self.features.product_features([p["product_id"] for p in products])):
                    product["features"] = pf
            if log_events:
                self._log(
                    rid, query, rewrite, [p["product_id"] for p in products], current.rewriter.version, exploration
                )
            results.append(
                {
                    "request_id": rid,
                    "query": query,
                    "query_key": query_key(query),
                    "rewrite": rewrite,
                    "rewrite_cached": hit and exploration is None,
                    "products": products,
                    "query_features": feats,
                }
            )
        return results

    def v2_outputs(self, results: list[dict[str, Any]]) -> list[InferOutput]:
        width = max((len(res["products"]) for res in results), default=0)
        ids = [[p["product_id"] for p in res["products"]] + [""] * (width - len(res["products"])) for res in results]
        return [
            _bytes_output("rewrite", [res["rewrite"] for res in results]),
            _bytes_output("product_ids", ids),
            _bytes_output("request_id", [res["request_id"] for res in results]),
        ]
