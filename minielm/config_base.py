"""The strict base of every config (settings sections and trainer configs) and the one way to merge
nested overrides into one. A leaf module, so that trainer configs and :mod:`minielm.config` share it."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

StrictModel = TypeVar("StrictModel", bound="StrictConfig")


class StrictConfig(BaseModel):
    """Unknown keys and bad values are errors that name the field, on construction and on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base``: nested mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def with_overrides(config: StrictModel, overrides: dict[str, Any]) -> StrictModel:
    """A validated copy of ``config`` with nested ``overrides`` merged in (pydantic's ValidationError if bad)."""
    return type(config).model_validate(deep_merge(config.model_dump(), overrides))
