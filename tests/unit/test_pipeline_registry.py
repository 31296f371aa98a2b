"""Pipelines are found by name; an unknown name lists the choices."""

from __future__ import annotations

import pytest

from pipelines.registry import PipelineNotFound, load_pipeline


def test_unknown_pipeline_names_the_choices():
    with pytest.raises(PipelineNotFound, match="training"):
        load_pipeline("nope")
