"""The KServe ModelServer, bound to a chosen host, with MiniELM's metrics and input guards.

KServe's ``ModelServer`` binds 0.0.0.0 and serves one process-global FastAPI app. :class:`LocalModelServer`
keeps KServe's data plane, v1/v2 routes, ``/metrics`` and error handlers, but builds a fresh app per
server (so tests and benchmarks can start several in one process), binds ``serving.host`` (127.0.0.1 by
default), turns request-validation errors into 400s naming the field, answers the platform's input errors
with 400 and its environment errors with 503 (:mod:`minielm.errors`), rejects non-UTF-8 bodies with the
offending field, and counts every inference request in the MiniELM metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.protocol.rest.server import RESTServer

from minielm.errors import MinielmError
from minielm.logs import get_logger
from serving.metrics import ERRORS, LATENCY, REQUESTS, error_type

log = get_logger(__name__)

_INFER_PATH = re.compile(r"^/v(?P<v>[12])/models/(?P<model>[^/:]+)(?::predict|/infer)$")


def _json_response_start(status: int, body: bytes, headers: dict[str, str] | None = None) -> dict:
    """The ASGI ``http.response.start`` message of a JSON body, with any extra headers."""
    extra = [(key.encode(), value.encode()) for key, value in (headers or {}).items()]
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
    }


def _json_error(status: int, message: str) -> tuple[dict, bytes]:
    body = json.dumps({"error": message}).encode()
    return _json_response_start(status, body), body


def _first_bad_text(value: Any, path: str) -> str | None:
    """Path of the first string holding a lone surrogate (a byte that was not UTF-8)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return None
        except UnicodeEncodeError:
            return path or "request body"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_bad_text(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_bad_text(item, f"{path}[{i}]")
            if found:
                return found
    return None


def utf8_error(body: bytes) -> str | None:
    """None for a UTF-8 body; else a message naming the field that carries the bad bytes."""
    try:
        body.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        position = error.start
    try:
        field = _first_bad_text(json.loads(body.decode("utf-8", "surrogateescape")), "")
    except ValueError:
        field = None
    where = field or "request body"
    return f"{where}: expected UTF-8 text, got a non-UTF-8 byte at body offset {position}"


# (model name, v1 body, client's x-request-id) -> (JSON body, response headers) when the answer is in memory
MemoryAnswer = Callable[[str, bytes, "str | None"], "tuple[bytes, dict[str, str]] | None"]


class InferenceGuard:
    """The outermost ASGI layer on the inference routes: metrics for every request, 400 for non-UTF-8 bodies,
    the cache-hit lane, and the server-side time of each response in a ``server-timing: app;dur=<ms>`` header
    (W3C Server-Timing), so a client or benchmark can tell the server's share of a latency from the network's.

    The time runs from the moment the server hands the parsed request head to the application (before every
    FastAPI/Starlette/KServe layer and before the body is read) to the start of the response; it leaves out
    only the socket read and HTTP parsing (uvicorn's C parser) and the write of the (small) response body.

    The cache-hit lane: a v1 request that ``memory_answer`` can answer from memory (every query a rewrite-cache
    hit held in process, nothing else asked for) is answered here, without the routing, dependency and
    dataplane layers that cost several times the lookup itself; anything else, including every malformed
    request, goes the normal way and gets the normal answer or error.
    """

    def __init__(self, app, memory_answer: MemoryAnswer | None = None) -> None:
        self.app = app
        self.memory_answer = memory_answer

    async def __call__(self, scope, receive, send) -> None:
        match = _INFER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        model, endpoint = match["model"], f"v{match['v']}"
        started = time.perf_counter()
        status = {"code": 500}
        read_ms: float | None = None  # waiting for the client's body, inside app (None: the app reads it)

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                elapsed_ms = (time.perf_counter() - started) * 1000
                value = f"app;dur={elapsed_ms:.3f}" + ("" if read_ms is None else f", read;dur={read_ms:.3f}")
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", value.encode())]}
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            if b"inference-header-content-length" in headers:  # v2 binary tensors are not text
                await self.app(scope, receive, send_wrapper)
                return
            chunks, more = [], True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            read_ms = (time.perf_counter() - started) * 1000
            body = b"".join(chunks)
            problem = utf8_error(body)
            if problem is not None:
                start, payload = _json_error(400, problem)
                await send_wrapper(start)
                await send({"type": "http.response.body", "body": payload})
                return
            if endpoint == "v1" and self.memory_answer is not None:
                request_id = headers.get(b"x-request-id")
                answer = self.memory_answer(model, body, request_id.decode("latin-1") if request_id else None)
                if answer is not None:
                    payload, extra = answer
                    await send_wrapper(_json_response_start(200, payload, extra))
                    await send({"type": "http.response.body", "body": payload})
                    return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            code = status["code"]
            REQUESTS.labels(model, endpoint, str(code)).inc()
            LATENCY.labels(model, endpoint).observe(time.perf_counter() - started)
            kind = error_type(code)
            if kind:
                ERRORS.labels(kind).inc()


async def validation_error_handler(_request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for a malformed v2 body becomes a 400 that names the field."""
    first = error.errors()[0] if error.errors() else {}
    location = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    field = ".".join(location) or "request body"
    return JSONResponse(status_code=400, content={"error": f"{field}: {first.get('msg', 'invalid value')}"})


async def minielm_error_handler(_request, error: MinielmError) -> JSONResponse:
    """The platform's errors by branch: the client's input 400, an unavailable dependency 503."""
    return JSONResponse(status_code=error.http_status, content={"error": str(error)})


async def invalid_input_handler(request, error: InvalidInput) -> JSONResponse:
    """A client mistake is expected traffic: one log line, no stack trace, and a 400 naming what was wrong."""
    log.info("client error", status=400, path=request.url.path, error=str(error))
    return JSONResponse(status_code=400, content={"error": str(error)})


class LocalModelServer(ModelServer):
    """A ModelServer on ``host`` (not 0.0.0.0) with its own app; can run in a background thread."""

    def __init__(self, host: str = "127.0.0.1", http_port: int = 8080, **kwargs) -> None:
        kwargs.setdefault("enable_grpc", False)
        kwargs.setdefault("enable_latency_logging", False)
        super().__init__(http_port=http_port, workers=1, **kwargs)
        self.host = host
        self._uvicorn: uvicorn.Server | None = None

    def build_app(self) -> FastAPI:
        rest = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port)
        app = FastAPI(
            title="MiniELM model server", docs_url=None, redoc_url=None, default_response_class=ORJSONResponse
        )
        rest._register_endpoints(app)
        rest._add_exception_handlers(app)
        app.add_exception_handler(RequestValidationError, validation_error_handler)
        app.add_exception_handler(MinielmError, minielm_error_handler)
        app.add_exception_handler(InvalidInput, invalid_input_handler)
        return app

    def _memory_answer(self, model_name: str, body: bytes, request_id: str | None) -> tuple[bytes, dict] | None:
        model = self.registered_models.get_model(model_name)
        answer = getattr(model, "v1_answer_from_memory", None)
        return answer(body, request_id) if answer is not None else None

    def start(self, models: list) -> None:
        """Register the (already loaded) models and serve until :meth:`stop`; blocks."""
        self._register_and_check_atleast_one_model_is_ready(models)
        config = uvicorn.Config(
            InferenceGuard(self.build_app(), memory_answer=self._memory_answer),
            host=self.host,
            port=self.http_port,
            log_config=None,
            access_log=False,
            loop="asyncio",
            timeout_keep_alive=self.timeout_keep_alive,
            timeout_graceful_shutdown=self.grace_period,
        )
        self._uvicorn = uvicorn.Server(config)
        asyncio.run(self._serve_app())

    async def _serve_app(self) -> None:
        self.setup_event_loop()
        await self._uvicorn.serve()

    @property
    def started(self) -> bool:
        return bool(self._uvicorn and self._uvicorn.started)

    @property
    def bound_port(self) -> int:
        return self._uvicorn.servers[0].sockets[0].getsockname()[1]

    def stop(self, sig: int | None = None) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        for name in list(self.registered_models.get_models().keys()):
            self.registered_models.unload(name)


@dataclass
class RunningServer:
    """A server running in a background thread: its base URL and how to stop it."""

    url: str
    server: LocalModelServer
    thread: threading.Thread
    on_stop: Callable[[], None] | None = None

    def stop(self, timeout_s: float = 15.0) -> None:
        self.server.stop()
        self.thread.join(timeout=timeout_s)
        if self.on_stop is not None:
            self.on_stop()
            self.on_stop = None


def serve_in_thread(
    models: list,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout_s: float = 30.0,
    on_stop: Callable[[], None] | None = None,
) -> RunningServer:
    """Start a LocalModelServer for loaded models on ``host:port`` (0: a free port) and wait until it listens."""
    server = LocalModelServer(host=host, http_port=port)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.start(models)
        except BaseException as error:  # surfaced to the caller below
            errors.append(error)

    thread = threading.Thread(target=run, name="model-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"model server failed to start: {errors[0] if errors else 'thread exited'}")
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"model server did not listen on {host}:{port} within {start_timeout_s} s")
        time.sleep(0.02)
    url = f"http://{host}:{server.bound_port}"
    log.info("model server listening", url=url, models=[m.name for m in models])
    return RunningServer(url=url, server=server, thread=thread, on_stop=on_stop)
