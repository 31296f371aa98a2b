"""Structured logging: one event name plus key=value fields per line (JSON with MINIELM_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class _StructFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        if self.as_json:
            payload = {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                payload["exc"] = self.formatException(record.exc_info)
            return json.dumps(payload, default=str)
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname.lower():<7} {record.name}: {record.getMessage()}" + (f" {text}" if text else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StructLogger(logging.LoggerAdapter):
    """``log.info("event", key=value, ...)``: fields travel with the record."""

    def process(self, msg: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        reserved = {"exc_info", "stack_info", "stacklevel", "extra"}
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k not in reserved}
        kwargs.setdefault("extra", {})["fields"] = fields
        return msg, kwargs


def get_logger(name: str) -> StructLogger:
    """A logger under the ``minielm`` tree, whatever package asks (serving, pipelines, ...)."""
    if not name.startswith("minielm"):
        name = f"minielm.{name}"
    return StructLogger(logging.getLogger(name), {})


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (a CLI test runner swaps it per invocation)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str | None = None) -> None:
    """Send minielm logs to stderr once; level from ``level``, else MINIELM_LOG_LEVEL (default info)."""
    root = logging.getLogger("minielm")
    if getattr(root, "_minielm_configured", False):
        if level:
            root.setLevel(level.upper())
        return
    handler = _CurrentStderrHandler()
    handler.setFormatter(_StructFormatter(os.environ.get("MINIELM_LOG_FORMAT", "text") == "json"))
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("MINIELM_LOG_LEVEL", "info")).upper())
    root.propagate = False
    root._minielm_configured = True  # type: ignore[attr-defined]


# Libraries that log to the console on their own handlers (DeepSpeed warns "Setting accelerator to CPU").
THIRD_PARTY_LOGGERS = ("DeepSpeed", "kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access")


class _DivertBelow(logging.Filter):
    """Sends a library's records below ``level`` to ``handler`` (the run's log file) instead of its console."""

    def __init__(self, handler: logging.Handler, level: int) -> None:
        super().__init__()
        self.handler, self.level = handler, level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        if record.levelno >= logging.INFO:
            self.handler.handle(record)
        return False


@contextmanager
def logs_to_file(
    path: Path, console_level: int = logging.WARNING, libraries: tuple[str, ...] = THIRD_PARTY_LOGGERS
) -> Iterator[Path]:
    """For the duration, every minielm record from info up goes to ``path`` and the console shows only
    ``console_level`` and up (long runs keep their tables readable and the details in a file); the
    ``libraries``' own records below error go to the file too.

    A console already set below info (``--log-level debug``) is left as it is.
    """
    root = logging.getLogger("minielm")
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(_StructFormatter(as_json=False))
    saved_level, saved = root.level, [(handler, handler.level) for handler in root.handlers]
    if root.getEffectiveLevel() >= logging.INFO:
        for handler, _ in saved:
            handler.setLevel(max(handler.level, console_level))
        root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    divert = _DivertBelow(file_handler, logging.ERROR)
    diverted = [logging.getLogger(name) for name in libraries] if root.getEffectiveLevel() >= logging.INFO else []
    for logger in diverted:
        logger.addFilter(divert)
    try:
        yield path
    finally:
        for logger in diverted:
            logger.removeFilter(divert)
        root.removeHandler(file_handler)
        file_handler.close()
        root.setLevel(saved_level)
        for handler, level in saved:
            handler.setLevel(level)


OWN_PACKAGES = r"(minielm|serving|components|pipelines)(\.|$)"


def quiet_third_party_warnings() -> None:
    """Hide other libraries' deprecation and future warnings (FastAPI, transformers, ...) from a command's
    output; this project's own warnings still show, and ``python -W``/``PYTHONWARNINGS`` win when set.

    Idempotent: long runs call it again after importing libraries that reset the filters at import (Feast's
    feature_view module puts DeprecationWarning back to "once")."""
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=OWN_PACKAGES)
    # FastAPI's own deprecation notices (ORJSONResponse, raised inside KServe's routes) are UserWarnings.
    warnings.filterwarnings("ignore", message=r".* is deprecated", module=r"fastapi(\.|$)")
