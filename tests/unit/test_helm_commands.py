"""Every command the chart and the Dockerfiles run exists in the CLI and parses with its options.

A command another area has not landed yet is listed in PENDING_COMMANDS (the one place), with its
owner: its check is skipped, naming it, until the command exists, and from then on it is checked
like the rest. A command in neither the CLI nor that list fails.
"""

from __future__ import annotations

import json
import re

import pytest
import typer

try:  # typer >= 0.2x ships its own copy of click
    from typer._click.core import Context
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on upstream click
    from click import Context, UsageError

from minielm.cli import app
from tests.unit.helm_fixtures import RENDER_CASES, REPO_ROOT, pod_specs, rendered

# Command path -> who adds it. Remove an entry once the command exists (the test says when).
PENDING_COMMANDS: dict[tuple[str, ...], str] = {}
DOCKERFILES = sorted((REPO_ROOT / "docker").glob("*.Dockerfile"))


def _dockerfile_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCKERFILES:
        for match in re.finditer(r"^(?:CMD|ENTRYPOINT)\s+(\[.*\])\s*$", path.read_text(), re.MULTILINE):
            found.append((path.name, json.loads(match.group(1))))
    return found


def _chart_commands() -> list[tuple[str, list[str]]]:
    found = {}
    for case in RENDER_CASES:
        for doc in rendered(case):
            for spec in pod_specs(doc):
                for container in spec["containers"]:
                    argv = container.get("command", []) + container.get("args", [])
                    found[json.dumps(argv)] = f"{doc['kind']}/{doc['metadata']['name']}"
    return [(where, json.loads(argv)) for argv, where in sorted(found.items())]


def _is_group(command) -> bool:
    return hasattr(command, "resolve_command")


def _remaining(ctx) -> list[str]:
    """What a group left for its subcommand (click keeps the subcommand name apart)."""
    return list(getattr(ctx, "_protected_args", [])) + list(ctx.args)


def _resolve(argv: list[str]) -> tuple[tuple[str, ...], object, list[str], Context]:
    """Walk the typer app like click would: root options, then groups, down to the leaf command."""
    root = typer.main.get_command(app)
    ctx = root.make_context("minielm", list(argv), resilient_parsing=False)
    rest = _remaining(ctx)
    path: tuple[str, ...] = ()
    command: object = root
    while _is_group(command) and rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        if sub is None:
            raise UsageError(f"No such command {name!r}.")
        path += (name,)
        command = sub
        if _is_group(command):
            ctx = command.make_context(name, rest, parent=ctx)
            rest = _remaining(ctx)
    return path, command, rest, ctx


def _parse_minielm(argv: list[str]) -> None:
    try:
        path, command, rest, ctx = _resolve(argv)
    except typer.Exit as done:  # an eager option such as --help parsed and finished
        assert done.exit_code == 0, argv
        return
    except UsageError as error:
        pending = [p for p in PENDING_COMMANDS if argv[: len(p)] == list(p) or " ".join(p) in " ".join(argv)]
        if pending:
            pytest.skip(f"`minielm {' '.join(pending[0])}` not in the CLI yet ({PENDING_COMMANDS[pending[0]]})")
        raise AssertionError(f"`minielm {' '.join(argv)}`: {error.format_message()}") from None
    assert not _is_group(command), f"`minielm {' '.join(argv)}` names a group, not a command"
    try:
        command.make_context(path[-1], rest, parent=ctx)
    except UsageError as error:
        raise AssertionError(f"`minielm {' '.join(argv)}`: {error.format_message()}") from None


def _check(argv: list[str]) -> None:
    program, args = argv[0], argv[1:]
    if program == "minielm":
        _parse_minielm(args)
    elif program == "feast":
        from feast.cli.cli import cli as feast_cli

        ctx = feast_cli.make_context("feast", list(args))
        name, sub, rest = feast_cli.resolve_command(ctx, _remaining(ctx))
        sub.make_context(name, rest, parent=ctx)
    else:
        raise AssertionError(f"unexpected program {program!r}: the images only ship minielm and feast")


def test_the_dockerfiles_and_chart_run_commands():
    assert len(DOCKERFILES) == 2
    assert {tuple(a[:1]) for _, a in _chart_commands()} == {("minielm",), ("feast",)}


@pytest.mark.parametrize("where,argv", _dockerfile_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_dockerfile_command_exists(where, argv):
    _check(argv)


def test_chart_commands_exist_in_the_cli():
    skipped = []
    for where, argv in _chart_commands():
        try:
            _check(argv)
        except pytest.skip.Exception as reason:
            skipped.append(f"{where}: {reason}")
    if skipped:
        pytest.skip("; ".join(sorted(set(skipped))))


def test_pending_list_is_honest():
    """An entry whose command has landed must go: from then on it is checked like the rest."""
    root = typer.main.get_command(app)
    landed = []
    for path in PENDING_COMMANDS:
        command, ctx = root, Context(root)
        for name in path:
            command = command.get_command(ctx, name) if _is_group(command) else None
            if command is None:
                break
        if command is not None:
            landed.append(" ".join(path))
    assert not landed, f"now in the CLI, remove from PENDING_COMMANDS: {landed}"


def test_an_unknown_command_or_option_fails():
    with pytest.raises(AssertionError, match="No such command"):
        _check(["minielm", "pipeline", "launch", "rl_retraining"])
    with pytest.raises(AssertionError, match="No such option"):
        _check(["minielm", "pipeline", "schedule", "rl_retraining", "--every", "1h"])
    with pytest.raises(AssertionError, match="No such command"):
        _check(["minielm", "bogus"])
