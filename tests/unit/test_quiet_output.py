"""A quiet command line: other libraries' deprecation warnings are hidden at the CLI entry point (this
project's own still show), and a long run's structured logs go to a file while the console keeps warnings."""

from __future__ import annotations

import logging
import warnings

import pytest

from minielm.logs import configure_logging, get_logger, logs_to_file, quiet_third_party_warnings


def _warn_from(module: str, category: type[Warning]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        quiet_third_party_warnings()
        warnings.warn_explicit("old api", category, filename=f"{module}.py", lineno=1, module=module)
    return caught


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_third_party_deprecations_are_hidden_and_our_own_are_shown(category, monkeypatch):
    monkeypatch.setattr("sys.warnoptions", [])
    assert _warn_from("fastapi.routing", category) == []
    assert _warn_from("transformers.modeling_utils", category) == []
    assert len(_warn_from("minielm.training.engine", category)) == 1
    assert len(_warn_from("serving.server", category)) == 1


def test_warnings_a_user_asks_for_are_kept(monkeypatch):
    monkeypatch.setattr("sys.warnoptions", ["default"])
    assert len(_warn_from("fastapi.routing", DeprecationWarning)) == 1


def test_logs_to_file_keeps_info_in_the_file_and_warnings_on_the_console(tmp_path, capsys):
    configure_logging("info")
    log = get_logger("minielm.test_quiet")
    path = tmp_path / "run" / "demo.log"
    with logs_to_file(path):
        log.info("step detail", steps=600)
        log.warning("something to see")
    log.info("after the run")
    console = capsys.readouterr().err
    assert "something to see" in console and "step detail" not in console
    assert "after the run" in console, "the console level is restored"
    written = path.read_text()
    assert "step detail steps=600" in written and "something to see" in written and "after the run" not in written
    assert logging.getLogger("minielm").level == logging.INFO


def test_a_library_s_console_warnings_go_to_the_file_and_its_errors_stay(tmp_path, capsys):
    configure_logging("info")
    library = logging.getLogger("DeepSpeed")
    console = logging.StreamHandler()  # what the library installs at import (stderr at that moment)
    library.addHandler(console)
    try:
        path = tmp_path / "demo.log"
        with logs_to_file(path):
            library.warning("Setting accelerator to CPU")
            library.error("out of memory")
        library.warning("after the run")
    finally:
        library.removeHandler(console)
    shown = capsys.readouterr().err
    assert "Setting accelerator to CPU" not in shown and "out of memory" in shown and "after the run" in shown
    assert "Setting accelerator to CPU" in path.read_text()
