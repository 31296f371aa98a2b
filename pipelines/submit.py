"""Submitting the platform's pipelines to Kubeflow Pipelines: the one place that talks to a KFP API server.

``submit_run`` (a run), ``schedule_run`` (a recurring run, replacing one of the same name) and
``wait_for_run`` (poll until the run ends) are what ``minielm pipeline run|schedule`` and the drift
trigger use. They speak the KFP v2beta1 REST API (``/apis/v2beta1/...``) with a bearer token and a
namespace (multi-user Kubeflow), so every failure can be named: the host that cannot be reached, the
token that was refused, the namespace that does not exist.

Nothing is half-submitted: the arguments are checked (each ``s3://`` input must hold objects) and the
pipeline is compiled, with the live ``settings.pipelines``, into a temporary folder (the image's own
tree is read-only) before the first request; the run is created by one request.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from minielm.config import Settings
from minielm.errors import InputError, ServiceError
from minielm.s3_uris import S3Unreachable, S3UriError, is_s3_uri, require_objects
from pipelines.registry import compile_pipeline, load_pipeline

API = "/apis/v2beta1"
TOKEN_ENV = "MINIELM_KFP_TOKEN"
# Where Kubeflow projects a pipelines-audience service account token into pods (multi-user mode).
TOKEN_FILE_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("/var/run/secrets/kubeflow/pipelines/token")
FINAL_STATES = {"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"}


class SubmitInputError(InputError):
    """The request is wrong: a parameter, setting, URI, token or namespace (CLI exit 2)."""


class KfpUnavailable(ServiceError):
    """The KFP API server or S3 cannot be reached or failed (CLI exit 1)."""


@dataclass(frozen=True)
class KfpEndpoint:
    """A KFP API server, the namespace runs go to and the bearer token that authorises them."""

    host: str
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)
    ui_url: str | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.host.startswith(("http://", "https://")):
            raise SubmitInputError(f"--host: expected an http(s):// URL of the KFP API, got {self.host!r}")

    def run_url(self, run_id: str) -> str:
        return f"{(self.ui_url or self.host).rstrip('/')}/#/runs/details/{run_id}"

    def request(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        """One API call; failures become SubmitInputError / KfpUnavailable naming the host or namespace."""
        url = f"{self.host.rstrip('/')}{API}{path}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = requests.request(method, url, json=body, params=params, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as error:
            raise KfpUnavailable(f"cannot reach KFP at {self.host}: {type(error).__name__}") from None
        if response.ok:
            return response.json() if response.content else {}
        message = _server_message(response)
        if response.status_code == 401:
            raise SubmitInputError(f"KFP at {self.host} refused the token (HTTP 401): {message}")
        if response.status_code in (403, 404) and self.namespace:
            raise SubmitInputError(
                f"KFP at {self.host} refused namespace {self.namespace!r} (HTTP {response.status_code}): {message}"
            )
        if response.status_code == 403:
            raise SubmitInputError(f"KFP at {self.host} refused the request (HTTP 403): {message}")
        if response.status_code < 500:
            raise SubmitInputError(
                f"KFP at {self.host} rejected {method} {path} (HTTP {response.status_code}): {message}"
            )
        raise KfpUnavailable(f"KFP at {self.host} failed {method} {path} (HTTP {response.status_code}): {message}")


def _server_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason
    return str(payload.get("message") or payload.get("error") or payload)[:200]


def resolve_token(
    existing_token: str | None, token_file: Path | None, environ: dict[str, str] | None = None
) -> str | None:
    """The bearer token: ``--existing-token``, else ``$MINIELM_KFP_TOKEN``, else a token file (``--token-file``,
    ``$KF_PIPELINES_SA_TOKEN_PATH`` or the projected service account token), else none."""
    environ = dict(os.environ if environ is None else environ)
    if existing_token:
        return existing_token.strip()
    if environ.get(TOKEN_ENV):
        return environ[TOKEN_ENV].strip()
    if token_file is not None:
        if not Path(token_file).is_file():
            raise SubmitInputError(f"--token-file: {token_file} does not exist")
        return Path(token_file).read_text().strip()
    for candidate in (environ.get(TOKEN_FILE_ENV), DEFAULT_TOKEN_FILE):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text().strip()
    return None


def endpoint_from(
    settings: Settings,
    host: str | None = None,
    namespace: str | None = None,
    existing_token: str | None = None,
    token_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> KfpEndpoint:
    """The endpoint from the options, falling back to ``pipelines.kfp_host`` / ``pipelines.namespace``."""
    host = host or settings.pipelines.kfp_host
    if not host:
        raise SubmitInputError("no KFP host: pass --host or set pipelines.kfp_host")
    return KfpEndpoint(
        host=host,
        namespace=namespace or settings.pipelines.namespace,
        token=resolve_token(existing_token, token_file, environ),
        ui_url=settings.pipelines.ui_url,
    )


def check_arguments(name: str, arguments: dict[str, Any], settings: Settings, must_exist: bool = True) -> None:
    """Each data parameter is an ``s3://`` URI and (``must_exist``) holds objects."""
    module = load_pipeline(name)
    for parameter in module.URI_PARAMETERS:
        value = str(arguments.get(parameter) or "")
        if not value:
            continue
        if not is_s3_uri(value):
            raise SubmitInputError(
                f"--param {parameter}: a cluster run reads its data from S3; expected an s3:// URI, got {value!r} "
                "(upload a local folder with `minielm data upload DIR s3://...`)"
            )
        if not must_exist:
            continue
        try:
            require_objects(value, settings.s3)
        except S3UriError as error:
            raise SubmitInputError(f"--param {parameter}: {error}") from None
        except S3Unreachable as error:
            raise KfpUnavailable(f"--param {parameter}: {error}") from None


def pipeline_spec(name: str, settings: Settings) -> dict:
    """The pipeline compiled for ``settings.pipelines``, as the API takes it (pipeline and platform spec)."""
    with tempfile.TemporaryDirectory(prefix="minielm-pipeline-") as out_dir:
        docs = [
            d for d in yaml.safe_load_all(compile_pipeline(name, Path(out_dir), settings.pipelines).read_text()) if d
        ]
    declared = docs[0]["root"].get("inputDefinitions", {}).get("parameters", {})
    spec: dict[str, Any] = docs[0]
    if len(docs) > 1:
        platform: dict[str, Any] = {}
        for doc in docs[1:]:
            platform.update(doc)
        spec = {"pipeline_spec": docs[0], "platform_spec": platform}
    spec["_parameters"] = {name: not value.get("isOptional", False) for name, value in declared.items()}
    return spec


def _prepared(
    name: str, params: dict[str, Any], settings: Settings, inputs_must_exist: bool = True
) -> tuple[dict, dict[str, Any]]:
    """(spec, arguments) compiled and checked before any request is sent: ``params`` over the pipeline's
    ``cluster_arguments`` (``pipelines.data_uri``...), every required parameter given, every input an
    ``s3://`` URI that (``inputs_must_exist``) holds objects."""
    arguments = {**load_pipeline(name).cluster_arguments(settings), **params}
    spec = pipeline_spec(name, settings)
    required = spec.pop("_parameters")
    unknown = sorted(set(arguments) - set(required))
    if unknown:
        raise SubmitInputError(f"pipeline {name!r} has no parameter(s) {unknown}; expected some of {sorted(required)}")
    missing = sorted(p for p, needed in required.items() if needed and p not in arguments)
    if missing:
        raise SubmitInputError(
            f"pipeline {name!r} needs --param {missing[0]}=... (or set pipelines.{missing[0]}); missing {missing}"
        )
    check_arguments(name, arguments, settings, inputs_must_exist)
    return spec, arguments


def ensure_experiment(endpoint: KfpEndpoint, experiment: str) -> str:
    """The id of the experiment of that name in the namespace, created if missing."""
    predicate = {"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": experiment}]}
    params = {"filter": json.dumps(predicate), "page_size": 1}
    if endpoint.namespace:
        params["namespace"] = endpoint.namespace
    found = endpoint.request("GET", "/experiments", params=params).get("experiments") or []
    if found:
        return found[0]["experiment_id"]
    body = {"display_name": experiment}
    if endpoint.namespace:
        body["namespace"] = endpoint.namespace
    return endpoint.request("POST", "/experiments", body=body)["experiment_id"]


@dataclass(frozen=True)
class SubmittedRun:
    pipeline: str
    run_id: str
    url: str
    experiment_id: str

    def as_dict(self) -> dict[str, str]:
        return {"pipeline": self.pipeline, "run_id": self.run_id, "url": self.url, "experiment_id": self.experiment_id}


def submit_run(
    endpoint: KfpEndpoint, name: str, arguments: dict[str, Any], settings: Settings, run_name: str | None = None
) -> SubmittedRun:
    """Check, compile and submit one run of pipeline ``name``; returns its id and URL."""
    spec, arguments = _prepared(name, arguments, settings)
    experiment_id = ensure_experiment(endpoint, settings.pipelines.experiment)
    body = {
        "display_name": run_name or f"minielm-{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        "experiment_id": experiment_id,
        "pipeline_spec": spec,
        "runtime_config": {"parameters": arguments},
    }
    run = endpoint.request("POST", "/runs", body=body)
    return SubmittedRun(name, run["run_id"], endpoint.run_url(run["run_id"]), experiment_id)


def schedule_run(endpoint: KfpEndpoint, name: str, cron: str, arguments: dict[str, Any], settings: Settings) -> str:
    """Create the recurring run ``minielm-<name>``, then delete older ones of that name (idempotent; a failed
    create leaves the old schedule in place). The inputs need not exist yet: each run reads them when it starts
    (the chart schedules at install time, before any data is uploaded)."""
    spec, arguments = _prepared(name, arguments, settings, inputs_must_exist=False)
    experiment_id = ensure_experiment(endpoint, settings.pipelines.experiment)
    display_name = f"minielm-{name}"
    params: dict[str, Any] = {"experiment_id": experiment_id, "page_size": 200}
    if endpoint.namespace:
        params["namespace"] = endpoint.namespace
    existing = endpoint.request("GET", "/recurringruns", params=params).get("recurringRuns") or []
    body = {
        "display_name": display_name,
        "experiment_id": experiment_id,
        "pipeline_spec": spec,
        "runtime_config": {"parameters": arguments},
        "trigger": {"cron_schedule": {"cron": cron}},
        "max_concurrency": "1",
        "no_catchup": True,
        "mode": "ENABLE",
    }
    if endpoint.namespace:
        body["namespace"] = endpoint.namespace
    created = endpoint.request("POST", "/recurringruns", body=body)
    for run in existing:
        if run.get("display_name") == display_name and run["recurring_run_id"] != created["recurring_run_id"]:
            endpoint.request("DELETE", f"/recurringruns/{run['recurring_run_id']}")
    return created["recurring_run_id"]


def wait_for_run(
    endpoint: KfpEndpoint,
    run_id: str,
    on_change: Callable[[str, str], None] = lambda task, state: None,
    poll_s: float = 10.0,
    timeout_s: float | None = None,
) -> str:
    """Poll the run until it ends; ``on_change(task, state)`` hears every task (and ``run``) state change."""
    seen: dict[str, str] = {}
    started = time.monotonic()
    while True:
        run = endpoint.request("GET", f"/runs/{run_id}")
        tasks = (run.get("run_details") or {}).get("task_details") or []
        for task in tasks:
            task_name, state = task.get("display_name") or task.get("task_id", "?"), task.get("state", "")
            if state and seen.get(task_name) != state:
                seen[task_name] = state
                on_change(task_name, state)
        state = run.get("state", "RUNTIME_STATE_UNSPECIFIED")
        if seen.get("run") != state:
            seen["run"] = state
            on_change("run", state)
        if state in FINAL_STATES:
            return state
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise KfpUnavailable(f"run {run_id} on {endpoint.host} still {state} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def retraining_submitter(settings: Settings, environ: dict[str, str] | None = None) -> Callable[[str, dict, str], dict]:
    """What the drift trigger calls to start a pipeline: a cluster run when ``pipelines.kfp_host`` is set (the
    token from the environment or the projected service account token), else a local kfp.local run."""

    def submit(name: str, arguments: dict[str, Any], run_name: str) -> dict[str, Any]:
        if settings.pipelines.kfp_host:
            endpoint = endpoint_from(settings, environ=environ)
            return {"mode": "kfp", **submit_run(endpoint, name, arguments, settings, run_name).as_dict()}
        return {"mode": "local", "result": load_pipeline(name).run_local(settings, **arguments)}

    return submit
