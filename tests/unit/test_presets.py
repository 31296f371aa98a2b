"""Toy presets replace only the budgets they name, validate, and never touch the quality gate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from minielm import presets
from minielm.config import Settings


def test_toy_settings_applies_every_budget_and_keeps_the_rest():
    settings = Settings(seed=7)
    settings.distill.rewriter.steps = 9999
    toy = presets.toy_settings(settings)
    for section, budget in presets.TOY_DISTILL.items():
        for key, value in budget.items():
            assert getattr(getattr(toy.distill, section), key) == value
    assert toy.distill.rewriter.seq_kd_weight == settings.distill.rewriter.seq_kd_weight
    for key, value in presets.TOY_RL.items():
        assert getattr(toy.rl, key) == value
    assert toy.teachers.rewriter.backbone == "tiny" and toy.teachers.relevance.backbone == "tiny"
    assert toy.gate == settings.gate and toy.seed == 7 and toy.eval == settings.eval
    assert settings.distill.rewriter.steps == 9999, "the input settings are not modified"


def test_toy_teachers_keep_the_configured_tiny_shape():
    settings = Settings()
    settings.teachers.rewriter.tiny.num_layers = 1
    assert presets.toy_teachers(settings.teachers).rewriter.tiny.num_layers == 1


def test_a_preset_naming_an_unknown_field_fails(monkeypatch):
    monkeypatch.setitem(presets.TOY_RL, "no_such_budget", 1)
    with pytest.raises(ValidationError, match="no_such_budget"):
        presets.toy_rl(Settings().rl)


def test_named_presets_apply_by_name_and_unknown_names_list_the_choices():
    from minielm.config import ConfigError

    settings = Settings()
    assert presets.apply_preset(settings, "") is settings
    assert presets.apply_preset(settings, "toy") == presets.toy_settings(settings)
    with pytest.raises(ConfigError, match=r"preset: expected one of \['toy'\]"):
        presets.apply_preset(settings, "tiny")
