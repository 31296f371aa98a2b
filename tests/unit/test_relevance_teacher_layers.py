"""The relevance teacher's compute options: keep the backbone's first N layers, train only the top ones.
The kept layers must come from the pretrained stack, frozen weights must not move, trainable ones must."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from minielm.data.synthetic import generate_dataset
from minielm.errors import InputError
from minielm.models.backbones import sequence_classifier
from minielm.models.relevance_teacher import RelevanceTeacher, keep_first_layers
from minielm.models.tokenizer import load_tokenizer
from minielm.teachers.config import TinyBackboneConfig, tiny_relevance_config
from minielm.teachers.relevance import train_relevance_teacher
from minielm.training.config import TrainingConfig
from minielm.training.engine import freeze_below_top_layers

SHAPE = TinyBackboneConfig(
    hidden_size=48, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=96, vocab_size=400
)


def test_kept_layers_are_the_first_ones_and_frozen_weights_do_not_move(tmp_path):
    dataset = generate_dataset(n_products=150, n_queries=60, seed=3)
    training = TrainingConfig(
        max_steps=6,
        micro_batch_size=16,
        learning_rate=1e-2,
        warmup_steps=1,
        checkpoint_every=0,
        progress=False,
        trainable_top_layers=1,
    )
    config = tiny_relevance_config(
        tiny=SHAPE, training=training, max_length=48, max_eval_examples=40, backbone_layers=2
    )
    run = train_relevance_teacher(dataset, tmp_path, config)

    torch.manual_seed(training.seed)  # the trainer's initialisation, rebuilt from the run's tokenizer
    initial = sequence_classifier("tiny", load_tokenizer(run.model_dir), ".cache/models", SHAPE).state_dict()
    teacher = RelevanceTeacher.load(run.model_dir)
    trained = teacher.model.state_dict()
    assert teacher.model.config.num_hidden_layers == 2 and len(teacher.model.model.layers) == 2
    assert not any(k.startswith("model.layers.2.") for k in trained)
    frozen = [k for k in trained if k.startswith(("model.embed_tokens.", "model.layers.0."))]
    moved = [k for k in trained if k.startswith(("model.layers.1.", "score."))]
    assert frozen and moved
    assert all(torch.equal(initial[k], trained[k]) for k in frozen)
    assert all(not torch.equal(initial[k], trained[k]) for k in moved)


def test_freezing_counts_trainable_parameters():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    model = LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            num_labels=4,
            pad_token_id=0,
        )
    )
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    head_and_norm = sum(p.numel() for p in [*model.score.parameters(), *model.model.norm.parameters()])
    assert freeze_below_top_layers(model, 2)["trainable"] == 2 * per_layer + head_and_norm
    assert (
        not model.model.embed_tokens.weight.requires_grad and not model.model.layers[1].mlp.up_proj.weight.requires_grad
    )
    assert keep_first_layers(model, 3).config.num_hidden_layers == 3
    with pytest.raises(ValueError, match="backbone_layers: expected 1..3"):
        keep_first_layers(model, 5)
    with pytest.raises(InputError, match="trainable_top_layers is 4, but the model has only 3 layers"):
        freeze_below_top_layers(model, 4)


@pytest.mark.parametrize(
    "changes,message",
    [
        (
            {"backbone_layers": 2, "training": TrainingConfig(trainable_top_layers=3)},
            "\\(3\\) exceeds the 2 layers kept",
        ),
        ({"backbone_layers": 4}, "backbone_layers \\(4\\) exceeds the tiny backbone's 3 layers"),
        (
            {"training": TrainingConfig(trainable_top_layers=4)},
            "trainable_top_layers \\(4\\) exceeds the 3 layers kept",
        ),
    ],
)
def test_layer_counts_are_checked_in_the_config(changes, message):
    with pytest.raises(ValidationError, match=message):
        tiny_relevance_config(tiny=SHAPE, **changes)
