"""The one error type of the RL stage: its input is unusable, and the message says which and why."""

from __future__ import annotations

from minielm.errors import InputError


class RLInputError(InputError):
    """Feedback windows, models or settings the RL stage cannot use; names the object and field."""
