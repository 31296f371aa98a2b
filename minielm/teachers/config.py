"""One validated config per teacher trainer (TRL style); ``Settings.teachers`` holds both.

The defaults train the real teachers on SmolLM2-135M-Instruct. Tests, the demo and quick local
runs select ``backbone: tiny`` (a small decoder that learns the toy rewrite mapping in seconds on
CPU) together with a matching :data:`TINY_TRAINING` budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from minielm.config_base import StrictConfig
from minielm.training.config import TrainingConfig


class TinyBackboneConfig(StrictConfig):
    """Shape of the tiny Llama-style decoder and its data-trained BPE vocabulary."""

    hidden_size: int = Field(128, ge=8, description="model width")
    num_layers: int = Field(2, ge=1, description="decoder layers")
    num_heads: int = Field(4, ge=1, description="attention heads")
    num_kv_heads: int = Field(2, ge=1, description="key-value heads (grouped-query attention)")
    intermediate_size: int = Field(384, ge=8, description="MLP width")
    max_positions: int = Field(256, ge=16, description="longest sequence, in tokens")
    vocab_size: int = Field(1024, ge=300, le=65536, description="size of the BPE vocabulary trained on the data")

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyBackboneConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        return self


class TeacherConfig(StrictConfig):
    """What every teacher trainer has: its backbone and the splits it trains and is evaluated on."""

    backbone: Literal["smollm2", "tiny"] = Field(
        "smollm2",
        description="smollm2: SmolLM2-135M-Instruct from its wheel; tiny: a small decoder trained from scratch",
    )
    tiny: TinyBackboneConfig = Field(TinyBackboneConfig(), description="shape of the tiny backbone")
    train_split: Literal["train", "validation", "test"] = Field("train", description="split the teacher trains on")
    eval_split: Literal["train", "validation", "test"] = Field("test", description="split it is evaluated on")


class RewriterTeacherConfig(TeacherConfig):
    """Fine-tune a causal LM on (noisy query -> canonical rewrite) pairs, loss on the answer only."""

    training: TrainingConfig = Field(
        TrainingConfig(max_steps=200, micro_batch_size=8, learning_rate=1e-4, warmup_steps=10, checkpoint_every=50),
        description="optimisation budget and schedule",
    )
    max_prompt_tokens: int = Field(64, ge=8, description="longest prompt, in tokens")
    max_answer_tokens: int = Field(32, ge=4, description="longest rewrite, in tokens")
    max_eval_queries: int = Field(500, ge=1, description="most queries evaluated")
    eval_batch_size: int = Field(32, ge=1, description="queries rewritten per evaluation batch")
    identity_pairs: bool = Field(
        True, description="also train canonical -> canonical, so clean queries are left as they are"
    )
    selective_rewriting: bool = Field(
        True,
        description="after training, pick on calibration_split the min_confidence below which the "
        "rewriter keeps the raw query (the most relevant products per query within the harm target)",
    )
    calibration_split: Literal["train", "validation", "test"] = Field(
        "validation", description="split that sets the selective-rewriting confidence threshold"
    )
    calibration_max_harm_rate: float = Field(
        0.02,
        ge=0,
        le=1,
        description="largest share of clean/out-of-catalog calibration queries the served rewriter may harm "
        "(lose a content word or relevant products); no threshold meets it: the rewriter abstains",
    )
    label_free: Literal["auto", "on", "off"] = Field(
        "auto",
        description="train from retrieval-verified candidate rewrites instead of canonical_query "
        "(auto: when the data has no canonical_query column)",
    )
    label_free_rounds: int = Field(2, ge=1, description="label-free rounds (later ones add the teacher's candidates)")
    intent_guard: bool = Field(
        True,
        description="serve the query unchanged when a rewrite loses a content word (catalog vocabulary and "
        "synonyms learned from the training pairs)",
    )
    front_end: Literal["none", "baseline"] = Field(
        "none",
        description="what the LM reads. none: the query. baseline: the rewrite of the phrase-table + catalog "
        "spelling baseline (fitted on the train split, saved with the model), so the LM learns only what the "
        "rules miss and the baseline's rewrite is served when the LM abstains. Label-free, each round's table is "
        "mined from that round's verified pairs instead of canonical_query. The distilled student inherits it",
    )
    front_end_folds: int = Field(
        5,
        ge=1,
        description="with front_end baseline: the LM's training inputs are rewritten by phrase tables mined "
        "from the other folds of the train queries (cross-fitting), so it learns the residual the baseline "
        "leaves on queries it did not see; 1 = the full table (which has memorised the train queries' noise)",
    )
    front_end_solved_ratio: float | None = Field(
        None,
        gt=0,
        description="with front_end baseline: keep at most this many pairs the front end already solves (input "
        "equals the canonical rewrite) per pair it does not, drawn at random by training.seed, so the steps go "
        "to the residual; None keeps every pair",
    )

    front_end_type_similarity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="with front_end baseline: after the rules, a phrase they leave unexplained (the query names no "
        "catalog product type) is replaced by the catalog product_type whose all-MiniLM-L6-v2 cosine reaches this "
        "(minielm.models.product_type_resolver; saved with the front end, so serving does the same); None: off. "
        "0.8 kept the real-query safe share at 95.5% on validation",
    )


class RelevanceTeacherConfig(TeacherConfig):
    """Fine-tune the LM with a 4-way ESCI head on labelled (query, product text) pairs."""

    training: TrainingConfig = Field(
        TrainingConfig(max_steps=200, micro_batch_size=8, learning_rate=5e-5, warmup_steps=10, checkpoint_every=50),
        description="optimisation budget and schedule",
    )
    max_length: int = Field(96, ge=16, description="tokens of query + product text")
    label_smoothing: float = Field(0.05, ge=0, lt=0.75, description="smoothing of the one-hot ESCI targets")
    max_train_examples: int = Field(0, ge=0, description="0 = all labelled pairs of the train split")
    max_eval_examples: int = Field(2000, ge=1, description="most labelled pairs evaluated")
    eval_batch_size: int = Field(64, ge=1, description="pairs scored per evaluation batch")
    backbone_layers: int = Field(
        0,
        ge=0,
        description="0 = every decoder layer of the backbone; N = keep only its first N pretrained layers "
        "(a smaller, faster teacher that is still pretrained)",
    )

    @model_validator(mode="after")
    def _layer_counts_fit(self) -> RelevanceTeacherConfig:
        kept = self.backbone_layers or (self.tiny.num_layers if self.backbone == "tiny" else 0)
        if self.backbone == "tiny" and self.backbone_layers > self.tiny.num_layers:
            raise ValueError(
                f"backbone_layers ({self.backbone_layers}) exceeds the tiny backbone's {self.tiny.num_layers} layers"
            )
        trainable = self.training.trainable_top_layers
        if kept and trainable and trainable > kept:
            raise ValueError(f"training.trainable_top_layers ({trainable}) exceeds the {kept} layers kept")
        return self


class TeachersConfig(StrictConfig):
    rewriter: RewriterTeacherConfig = RewriterTeacherConfig()
    relevance: RelevanceTeacherConfig = RelevanceTeacherConfig()
    models_cache_dir: Path = Field(
        Path(".cache/models"), description="where setup.sh unpacks the SmolLM2 GGUF (relative: cwd, then repo)"
    )


TINY_TRAINING = {
    "rewriter": TrainingConfig(
        max_steps=600,
        micro_batch_size=32,
        learning_rate=3e-3,
        warmup_steps=20,
        min_learning_rate_ratio=0.05,
        checkpoint_every=100,
        weight_decay=0.01,
        cpu_threads=1,
    ),
    "relevance": TrainingConfig(
        max_steps=300,
        micro_batch_size=32,
        learning_rate=3e-3,
        warmup_steps=10,
        min_learning_rate_ratio=0.05,
        checkpoint_every=50,
        weight_decay=0.01,
        cpu_threads=1,
    ),
}


def tiny_rewriter_config(**overrides) -> RewriterTeacherConfig:
    """The toy-scale rewriter teacher: tiny backbone and its training budget (overrides win)."""
    return RewriterTeacherConfig(**{"backbone": "tiny", "training": TINY_TRAINING["rewriter"], **overrides})


def tiny_relevance_config(**overrides) -> RelevanceTeacherConfig:
    """The toy-scale relevance teacher: tiny backbone and its training budget (overrides win)."""
    return RelevanceTeacherConfig(
        **{"backbone": "tiny", "training": TINY_TRAINING["relevance"], "max_length": 64, **overrides}
    )
