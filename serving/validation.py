"""Parse v1 (``instances``) and v2 (``inputs``) payloads into typed requests.

Everything a client can get wrong raises :class:`kserve.errors.InvalidInput` (HTTP 400) whose message
starts with the field path (``instances[2].query: ...``, ``inputs[query].data[0]: ...``) and says what
was expected, so a bad request never turns into a 500.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from minielm.config import ServingConfig

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Parsed:
    """What every endpoint needs from a request: per-instance fields plus request parameters."""

    instances: list[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def request_id_from(headers: dict[str, str] | None, payload_id: Any = None) -> str:
    """The client's ``x-request-id`` (or v2 ``id``) when well formed, else a fresh one."""
    for candidate in ((headers or {}).get("x-request-id"), payload_id):
        if isinstance(candidate, str) and _REQUEST_ID.match(candidate):
            return candidate
    return f"{random.getrandbits(128):032x}"


def check_text(value: Any, where: str, limit: int) -> str:
    """A non-empty, bounded, printable UTF-8 string."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(f"{where}: expected UTF-8 text, invalid byte at position {error.start}") from None
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: expected a string, got {_type_name(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where}: expected UTF-8 text, got a lone surrogate (non-UTF-8 bytes)") from None
    if _CONTROL.search(value):
        raise InvalidInput(f"{where}: contains control characters")
    if not value.strip():
        raise InvalidInput(f"{where}: must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{where}: {len(value)} characters exceeds the limit of {limit} (serving.max_query_chars)")
    return value


def check_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where}: expected an integer in [{low}, {high}], got {value!r}")
    return value


def check_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: expected true or false, got {value!r}")
    return value


def _check_batch(size: int, where: str, config: ServingConfig) -> None:
    if size == 0:
        raise InvalidInput(f"{where}: expected at least one instance")
    if size > config.max_batch_size:
        raise InvalidInput(f"{where}: batch of {size} exceeds serving.max_batch_size={config.max_batch_size}")


def parse_v1(payload: Any, fields: dict[str, str], config: ServingConfig) -> Parsed:
    """``{"instances": [{field: ...}, ...], "parameters": {...}}``; a bare string instance means ``{"query": s}``.

    ``fields`` maps each allowed instance field to its kind: ``text`` (required query), ``texts`` or
    ``ids`` (optional lists of strings).
    """
    if isinstance(payload, (bytes, str)):  # JSON sent with a non-JSON content-type: KServe passes it raw
        try:
            payload = json.loads(payload)
        except ValueError:
            raise InvalidInput("request body: expected JSON (content-type application/json)") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"request body: expected a JSON object with 'instances', got {_type_name(payload)}")
    if "instances" not in payload:
        raise InvalidInput('instances: required, a list of objects like {"query": "..."}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(f"instances: expected a list, got {_type_name(instances)}")
    _check_batch(len(instances), "instances", config)
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput(f"parameters: expected an object, got {_type_name(parameters)}")
    parsed = []
    for i, instance in enumerate(instances):
        if isinstance(instance, str):
            instance = {"query": instance}
        if not isinstance(instance, dict):
            raise InvalidInput(f"instances[{i}]: expected an object with 'query', got {_type_name(instance)}")
        unknown = sorted(set(instance) - set(fields))
        if unknown:
            raise InvalidInput(f"instances[{i}].{unknown[0]}: unknown field; allowed: {sorted(fields)}")
        parsed.append(_check_instance(instance, fields, f"instances[{i}]", config))
    return Parsed(parsed, parameters)


def _check_instance(
    instance: dict[str, Any], fields: dict[str, str], where: str, config: ServingConfig
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        if name not in instance:
            if kind == "text":
                raise InvalidInput(f"{where}.{name}: required")
            continue
        value = instance[name]
        if kind == "text":
            out[name] = check_text(value, f"{where}.{name}", config.max_query_chars)
        else:
            if not isinstance(value, list):
                raise InvalidInput(f"{where}.{name}: expected a list of strings, got {_type_name(value)}")
            if len(value) > config.max_batch_size:
                raise InvalidInput(
                    f"{where}.{name}: {len(value)} items exceeds serving.max_batch_size={config.max_batch_size}"
                )
            limit = config.max_query_chars if kind == "ids" else 64 * config.max_query_chars
            out[name] = [check_text(v, f"{where}.{name}[{j}]", limit) for j, v in enumerate(value)]
    return out


def v2_input(request: InferRequest, name: str, config: ServingConfig, required: bool = True) -> list[str] | None:
    """The strings of the BYTES input ``name`` (one per row)."""
    matches = [tensor for tensor in request.inputs if tensor.name == name]
    if not matches:
        if required:
            names = [tensor.name for tensor in request.inputs]
            raise InvalidInput(f"inputs: no input named {name!r} (got {names})")
        return None
    tensor = matches[0]
    where = f"inputs[{name}]"
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"{where}.datatype: expected BYTES, got {tensor.datatype}")
    data = tensor.data
    if not isinstance(data, list):
        raise InvalidInput(f"{where}.data: expected a list of strings, got {_type_name(data)}")
    flat = [v for row in data for v in row] if data and all(isinstance(row, list) for row in data) else data
    _check_batch(len(flat), f"{where}.data", config)
    expected = 1
    for dim in tensor.shape:
        expected *= dim
    if expected != len(flat):
        raise InvalidInput(f"{where}.shape: {list(tensor.shape)} does not match {len(flat)} data elements")
    limit = config.max_query_chars if name == "query" else 64 * config.max_query_chars
    return [check_text(v, f"{where}.data[{i}]", limit) for i, v in enumerate(flat)]


def v2_parameters(request: InferRequest) -> dict[str, Any]:
    params = request.parameters or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"parameters: expected an object, got {_type_name(params)}")
    return {key: getattr(value, "value", value) for key, value in params.items()}


def num_return_parameter(parameters: dict[str, Any], config: ServingConfig) -> int:
    return check_int(parameters.get("num_return", 1), "parameters.num_return", 1, config.max_num_rewrites)


def flag_parameter(parameters: dict[str, Any], name: str, default: bool) -> bool:
    return check_bool(parameters.get(name, default), f"parameters.{name}")


def allowed_parameters(parameters: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise InvalidInput(f"parameters.{unknown[0]}: unknown parameter; allowed: {sorted(allowed)}")
