"""One error hierarchy: every error class of the project derives from the input or the environment branch,
the CLI maps the branches to exit codes 2 and 1, the model server to HTTP 400 and 503."""

from __future__ import annotations

import ast
import builtins
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minielm.cli import app
from minielm.errors import InputError, MinielmError, ServiceError
from minielm.services import EmbeddedServices, ServicesError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("minielm", "serving", "pipelines", "components")
BUILTIN_EXCEPTIONS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
}


def _error_classes() -> dict[str, tuple[str, list[str]]]:
    """Every exception class defined in the project's source (``module:Name`` -> its base names), found by
    parsing, so a new module cannot be missed and nothing heavy (torch, kserve) is imported."""
    defined: dict[str, tuple[str, list[str]]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                    defined[f"{module}:{node.name}"] = (node.name, bases)
    errors = set(BUILTIN_EXCEPTIONS)
    while found := {name for name, bases in defined.values() if errors & set(bases)} - errors:
        errors |= found
    return {key: value for key, value in defined.items() if value[0] in errors - BUILTIN_EXCEPTIONS}


def test_every_error_class_derives_from_an_input_or_environment_branch():
    classes = _error_classes()
    assert len(classes) >= 20, sorted(classes)
    bases_of = {name: bases for name, bases in classes.values()}
    roots = {MinielmError.__name__, InputError.__name__, ServiceError.__name__}

    def in_hierarchy(name: str) -> bool:
        return name in roots or any(base in bases_of and in_hierarchy(base) for base in bases_of.get(name, []))

    outside = sorted(key for key, (name, _) in classes.items() if not in_hierarchy(name))
    assert not outside, f"error classes outside minielm.errors: {outside}"


def test_branches_carry_their_exit_code_and_http_status_and_a_plain_message():
    from minielm.storage import ObjectNotFound
    from pipelines.registry import PipelineNotFound

    assert (InputError.exit_code, InputError.http_status) == (2, 400)
    assert (ServiceError.exit_code, ServiceError.http_status) == (1, 503)
    assert issubclass(InputError, ValueError) and issubclass(ServiceError, RuntimeError)
    assert str(PipelineNotFound("no pipeline 'x'")) == "no pipeline 'x'", "KeyError-derived: no quotes"
    assert issubclass(ObjectNotFound, KeyError) and issubclass(ObjectNotFound, ServiceError)


def test_cli_maps_an_input_error_to_exit_2_with_one_line(tmp_path):
    empty = tmp_path / "not-esci"
    empty.mkdir()
    result = CliRunner().invoke(app, ["data", "load-esci", str(empty)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output


def test_cli_maps_an_environment_error_to_exit_1_with_one_line(monkeypatch, tmp_path):
    def unavailable(self):
        raise ServicesError("the Kafka broker did not become healthy within 60 s")

    monkeypatch.setattr(EmbeddedServices, "start", unavailable)
    result = CliRunner().invoke(app, ["--set", f"paths.state_dir={tmp_path}", "services", "up"])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "error: the Kafka broker did not become healthy within 60 s"


def test_cli_maps_bad_settings_to_exit_2():
    result = CliRunner().invoke(app, ["--set", "kafka.partitions=0", "config", "show"])
    assert result.exit_code == 2 and "kafka.partitions" in result.output


@pytest.mark.integration
def test_model_server_answers_input_errors_400_and_environment_errors_503():
    from kserve import Model

    from serving.server import serve_in_thread

    class Failing(Model):
        def __init__(self) -> None:
            super().__init__("failing")
            self.ready = True

        async def predict(self, payload, headers=None, response_headers=None):
            kind = payload["instances"][0]["kind"]
            if kind == "input":
                raise InputError("instances[0].query: expected a string")
            if kind == "environment":
                raise ServiceError("the search index is not loaded")
            return {"predictions": ["ok"]}

    running = serve_in_thread([Failing()])
    try:
        answers = {}
        for kind in ("input", "environment", "none"):
            request = urllib.request.Request(
                f"{running.url}/v1/models/failing:predict",
                data=json.dumps({"instances": [{"kind": kind}]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answers[kind] = (response.status, json.loads(response.read()))
            except urllib.error.HTTPError as error:
                answers[kind] = (error.code, json.loads(error.read()))
    finally:
        running.stop()
    assert answers["input"] == (400, {"error": "instances[0].query: expected a string"})
    assert answers["environment"] == (503, {"error": "the search index is not loaded"})
    assert answers["none"] == (200, {"predictions": ["ok"]})
