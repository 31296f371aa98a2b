"""Toy-scale presets: the budgets that run the whole loop on two CPU cores in minutes.

One place for them: the demo applies them, and production entry points may too (``--toy`` on the
CLI, toy pipeline runs) without importing the demo. A preset replaces only the budget fields it
names (model sizes, steps, batch sizes, evaluation sizes) and keeps every other setting; it never
touches the quality gate.
"""

from __future__ import annotations

from typing import Any

from minielm.config import ConfigError, DistillConfig, RLConfig, Settings
from minielm.config_base import with_overrides
from minielm.teachers.config import TeachersConfig, tiny_relevance_config, tiny_rewriter_config

# A 2-layer MiniLM relevance student and a 1-layer student decoder. The toy relevance teacher is
# weak (hundreds of steps), so the relevance student also sees the gold labels.
TOY_DISTILL: dict[str, Any] = {
    "relevance": {
        "num_layers": 2,
        "steps": 80,
        "batch_size": 16,
        "learning_rate": 2e-4,
        "max_length": 64,
        "triples_per_query": 4,
        "gold_mix_weight": 1.0,
    },
    "rewriter": {"num_layers": 1, "steps": 400, "batch_size": 32, "learning_rate": 3e-3, "kd_queries": 2000},
}

# A few GRPO steps on a handful of queries; a run starts after ten new served requests.
TOY_RL: dict[str, Any] = {
    "max_steps": 6,
    "queries_per_step": 2,
    "num_generations": 8,
    "labelled_queries_per_run": 16,
    "max_train_queries": 64,
    "min_new_requests": 10,
}


def toy_distill(config: DistillConfig) -> DistillConfig:
    """The distillation settings with the toy budget."""
    return with_overrides(config, TOY_DISTILL)


def toy_rl(config: RLConfig) -> RLConfig:
    """The RL retraining settings with the toy budget."""
    return with_overrides(config, TOY_RL)


def toy_teachers(config: TeachersConfig) -> TeachersConfig:
    """Both teachers on the tiny backbone (its configured shape) with its toy training budget."""
    return config.model_copy(
        update={
            "rewriter": tiny_rewriter_config(tiny=config.rewriter.tiny),
            "relevance": tiny_relevance_config(tiny=config.relevance.tiny),
        }
    )


def toy_settings(settings: Settings) -> Settings:
    """``settings`` with every toy budget applied: teachers, distillation and RL retraining."""
    return settings.model_copy(
        update={
            "teachers": toy_teachers(settings.teachers),
            "distill": toy_distill(settings.distill),
            "rl": toy_rl(settings.rl),
        }
    )


# Named presets that entry points (e.g. a pipeline's ``preset`` parameter) apply to loaded settings.
PRESETS = {"toy": toy_settings}


def apply_preset(settings: Settings, name: str) -> Settings:
    """``settings`` with the named preset applied; ``""`` applies none."""
    if not name:
        return settings
    if name not in PRESETS:
        raise ConfigError(f"preset: expected one of {sorted(PRESETS)} or empty, got {name!r}")
    return PRESETS[name](settings)
