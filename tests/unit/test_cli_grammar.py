"""One command-line grammar: the same option names for the same things, ``-o/--output-format`` wherever a
command prints a result, one ``error:`` line for a bad value, and the docs name only options that exist."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from minielm.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
# Old spellings of --data, --index, --output and -o json; services up --data-dir is the servers' own storage.
RETIRED = {"--out", "--out-dir", "--workdir", "--dataset-dir", "--index-dir", "--report", "--json", "--data-dir"}
ALLOWED = {(("services", "up"), "--data-dir")}
PRINTS_RESULTS = [
    ("config", "show"),
    ("data", "generate"),
    ("data", "index"),
    ("data", "load-esci"),
    ("data", "sample"),
    ("eval",),
    ("train", "teacher-rewriter"),
    ("train", "teacher-relevance"),
    ("distill", "rewriter"),
    ("distill", "relevance"),
    ("distill", "evaluate"),
    ("feedback", "simulate"),
    ("feedback", "aggregate"),
    ("feedback", "replay"),
    ("rl", "train"),
    ("rl", "status"),
    ("rl", "kserve-patch"),
    ("drift", "check"),
    ("drift", "latest"),
    ("pipeline", "run"),
]


def _commands(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = dict(_commands())


def _options(command) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts) if name.startswith("-")}


def test_no_command_uses_a_retired_option_name():
    found = {(path, name) for path, command in COMMANDS.items() for name in _options(command) & RETIRED} - ALLOWED
    assert not found, f"use --data, --index, --output or -o json instead: {sorted(found)}"


@pytest.mark.parametrize("path", PRINTS_RESULTS, ids=" ".join)
def test_every_command_that_prints_a_result_takes_the_output_format(path):
    assert {"-o", "--output-format"} <= _options(COMMANDS[path])


def test_a_bad_option_value_is_one_error_line_and_exit_2():
    result = runner.invoke(app, ["data", "generate", "--products", "many"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error:"), result.output
    assert "--products" in result.output
    result = runner.invoke(app, ["config", "show", "-o", "xml"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--output-format" in result.output


def test_an_unknown_log_level_is_one_error_line_and_exit_2():
    result = runner.invoke(app, ["--log-level", "foo", "config", "show"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--log-level" in result.output
    assert "Traceback" not in result.output


def test_the_log_level_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINIELM_LOG_LEVEL", "warning")
    assert runner.invoke(app, ["config", "show"]).exit_code == 0
    assert logging.getLogger("minielm").level == logging.WARNING
    monkeypatch.setenv("MINIELM_LOG_LEVEL", "loud")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2 and "MINIELM_LOG_LEVEL" in result.output
    monkeypatch.delenv("MINIELM_LOG_LEVEL")
    assert runner.invoke(app, ["--log-level", "INFO", "config", "show"]).exit_code == 0
    assert logging.getLogger("minielm").level == logging.INFO


def test_json_output_parses_and_text_output_is_not_json():
    import json

    as_json = runner.invoke(app, ["config", "show", "-o", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["kafka"]["partitions"] >= 1
    as_text = runner.invoke(app, ["config", "show"])
    assert as_text.exit_code == 0 and as_text.output.startswith("paths:")


INVOCATION = re.compile(r"(?:^|[`\s(])(?:\.venv/bin/)?minielm((?: +(?:[^`\n#|]|\|(?=\S))*)?)", re.MULTILINE)


def _documented_invocations() -> list[tuple[str, list[str]]]:
    """``minielm ...`` command lines in the README and docs (code spans, code blocks, table cells)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]
    found = []
    for doc in docs:
        # Continuations join; "a|b" and a table cell's escaped "a\|b" are alternatives; " | " ends a cell.
        text = doc.read_text().replace("\\\n", " ").replace("\\|", "\0")
        for match in INVOCATION.finditer(text):
            words = shlex.split(match.group(1).replace("\0", "|"), posix=False)
            found.append((f"{doc.relative_to(ROOT)}: minielm{match.group(1)}", words))
    return found


def _resolve(words: list[str]):
    """The documented command and the options it names (``a|b`` alternatives: every one must exist)."""
    options, index = [], 0
    while index < len(words) and words[index].startswith("-"):  # global options and their values
        index += 2 if words[index] in ("--set", "--config", "-c", "--log-level") else 1
    group = typer.main.get_command(app)
    paths = [()]
    for word in words[index:]:
        names = word.split("|")
        if hasattr(group, "commands") and all(name in group.commands for name in names):
            paths = [(*p, name) for p in paths for name in names]
            group = group.commands[names[0]]
        elif word.startswith("-") or word.startswith("[-"):
            options += [name.split("=")[0] for name in re.findall(r"--?[a-z][a-z0-9-]*", word)]
        elif hasattr(group, "commands"):
            return None, []
    return paths, options


def test_every_command_and_option_the_docs_name_exists():
    checked, problems = 0, []
    for where, words in _documented_invocations():
        paths, options = _resolve(words)
        if not paths or paths == [()]:
            continue  # "minielm" as a word (the chart, the namespace), not a command line
        for path in paths:
            if path not in COMMANDS:
                problems.append(f"{where}: no command {' '.join(path)}")
                continue
            checked += 1
            missing = [o for o in options if o not in _options(COMMANDS[path]) | {"--help"}]
            if missing:
                problems.append(f"{where}: {' '.join(path)} has no {', '.join(missing)}")
    assert checked > 20 and not problems, problems
