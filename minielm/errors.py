"""The one error hierarchy: every error the platform raises on purpose says whose problem it is.

- :class:`InputError`: the caller's input is wrong (a setting, an argument, a data file, a request
  payload); the message names the field and what was expected. CLI exit 2, HTTP 400.
- :class:`ServiceError`: the environment failed (a service is down or unhealthy, an object or a tool
  is missing where it should be); retrying later or fixing the installation helps. CLI exit 1, HTTP 503.

The CLI maps both once (``minielm.cli``); the model server maps them to 400 and 503. The input branch
is also a ``ValueError`` and the environment branch a ``RuntimeError``, so ``except ValueError`` keeps
working where callers relied on it.
"""

from __future__ import annotations

EXIT_INPUT = 2
EXIT_ENVIRONMENT = 1


class MinielmError(Exception):
    """Base of every MiniELM error. Raised directly it means a bug (CLI exit 1, HTTP 500)."""

    exit_code = 1
    http_status = 500

    def __str__(self) -> str:
        # One plain message, also for the KeyError-derived classes (whose str() would quote it).
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InputError(MinielmError, ValueError):
    """Bad input from the caller; the message names the field and what was expected."""

    exit_code = EXIT_INPUT
    http_status = 400


class ServiceError(MinielmError, RuntimeError):
    """The environment failed: a service, a store, a model or a tool is unavailable or missing."""

    exit_code = EXIT_ENVIRONMENT
    http_status = 503
