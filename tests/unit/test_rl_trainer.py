"""The RL trainer on a tiny Llama with a scripted reward: groups hold the raw query and the greedy rewrite,
GRPO and DPO both move the policy toward rewarded rewrites with a bounded KL, zero-spread groups are
dropped and counted, and a mismatched reference tokenizer fails first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minielm.config import RLConfig
from minielm.models.rewriter import CausalRewriter
from minielm.rl.errors import RLInputError
from minielm.rl.trainer import candidate_groups, check_same_tokenizer, train_policy
from tests.unit.rl_fixtures import char_tokenizer, save_tiny_llama

VOWELS = set("aeiou")
QUERIES = ["red shoe", "blue hat", "tv stand", "usb cable"]
PROMPT_CHARS = "QRW.,'\""


class VowelRewards:
    """Scripted reward: the share of vowels in the rewrite."""

    def total(self, queries, rewrites, query_ids=None):
        return np.asarray([sum(c in VOWELS for c in text) / max(1, len(text)) for text in rewrites])


class ConstantRewards:
    def total(self, queries, rewrites, query_ids=None):
        return np.ones(len(rewrites))


def vowel_share_of_samples(model_dir, n: int = 16) -> float:
    torch.manual_seed(123)
    rewriter = CausalRewriter.load(model_dir, max_new_tokens=6, temperature=1.0, top_p=1.0)
    rewrites = [r for group in rewriter.rewrite(QUERIES, num_return=n, do_sample=True) for r in group]
    return float(np.mean(VowelRewards().total(None, rewrites)))


def config(**overrides) -> RLConfig:
    values = dict(num_generations=8, queries_per_step=2, max_steps=10, learning_rate=3e-2, beta=0.02, max_new_tokens=6)
    return RLConfig(**{**values, **overrides})


@pytest.fixture()
def base(tmp_path):
    return save_tiny_llama(tmp_path / "base", tokenizer=char_tokenizer(extra=PROMPT_CHARS))


def test_groups_hold_the_raw_query_and_the_greedy_rewrite(base):
    rewriter = CausalRewriter.load(base, max_new_tokens=6, temperature=1.0)
    greedy = [text for text, _ in rewriter.rewrite_with_confidence(QUERIES)]
    groups = candidate_groups(rewriter, QUERIES, group_size=8, beams=2)
    for query, best, group in zip(QUERIES, greedy, groups):
        assert group[0] == query and best in group
        assert len(group) == len(set(group)) and 2 < len(group) <= 8


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["grpo", "dpo"])
def test_training_moves_the_policy_toward_rewarded_rewrites_with_bounded_kl(base, tmp_path, trainer):
    result = train_policy(
        base, base, QUERIES, [None] * 4, VowelRewards(), config(trainer=trainer), tmp_path / "tuned", seed=0
    )
    assert result.steps == 10
    before, after = vowel_share_of_samples(base), vowel_share_of_samples(tmp_path / "tuned")
    assert after > before + 0.1, (before, after)
    summary = result.summary()
    assert summary["groups"] == 20 and summary["zero_spread_groups"] < 20
    assert 0 < summary["kl_max"] < 5.0, summary
    assert (tmp_path / "tuned" / "tokenizer_config.json").is_file()


def test_groups_without_reward_spread_are_dropped_and_the_policy_stays(base, tmp_path):
    result = train_policy(
        base, base, QUERIES, [None] * 4, ConstantRewards(), config(max_steps=2), tmp_path / "same", seed=0
    )
    summary = result.summary()
    assert summary["zero_spread_groups"] == summary["groups"] == 4 and summary["zero_spread_share"] == 1.0
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(base).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "same").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reference_with_another_tokenizer_fails_before_training(tmp_path):
    policy = save_tiny_llama(tmp_path / "policy", tokenizer=char_tokenizer(extra=PROMPT_CHARS))
    other = save_tiny_llama(tmp_path / "other", tokenizer=char_tokenizer(extra="XYZ"))
    with pytest.raises(RLInputError, match="does not match the policy's tokenizer"):
        check_same_tokenizer(policy, other)
    with pytest.raises(RLInputError, match="does not match the policy's tokenizer"):
        train_policy(policy, other, QUERIES, [None] * 4, VowelRewards(), config(max_steps=1), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_groups_hold_the_rewrites_each_query_was_served_right_after_the_greedy_one(base):
    rewriter = CausalRewriter.load(base, max_new_tokens=6, temperature=1.0)
    served = [["red shoes", "red running shoe"], [], ["tv stand black"], []]
    groups = candidate_groups(rewriter, QUERIES, group_size=8, beams=2, served=served)
    assert groups[0][2:4] == served[0] and groups[2][2] == "tv stand black"
    assert all(len(group) <= 8 and len(group) == len(set(group)) for group in groups)


class PromptRecorder:
    """Wraps answer_log_probs to record the prompts the trainer scores rewrites under."""

    def __init__(self, function):
        self.function, self.prompts = function, []

    def __call__(self, model, tokenizer, queries, rewrites, max_answer_tokens):
        self.prompts.extend(queries)
        return self.function(model, tokenizer, queries, rewrites, max_answer_tokens)


def test_a_cascade_policy_is_tuned_on_what_its_lm_reads_and_keeps_its_front_end(base, tmp_path, monkeypatch):
    from minielm import baseline
    from minielm.models.rewriter import FRONT_END_DIR
    from minielm.rl import trainer

    front_end = baseline.PhraseTableRewriter({"tv": "television"}, {"television": 3, "stand": 3})
    cascade = tmp_path / "cascade"
    loaded = CausalRewriter.load(base, max_new_tokens=6)
    CausalRewriter(loaded.model, loaded.tokenizer, max_new_tokens=6, front_end=front_end).save(cascade)
    recorder = PromptRecorder(trainer.answer_log_probs)
    monkeypatch.setattr(trainer, "answer_log_probs", recorder)
    train_policy(cascade, base, ["tv stand"], [None], VowelRewards(), config(max_steps=1), tmp_path / "tuned")
    assert recorder.prompts and set(recorder.prompts) == {"television stand"}
    assert (tmp_path / "tuned" / FRONT_END_DIR).is_dir()
    tuned = CausalRewriter.load(tmp_path / "tuned", max_new_tokens=6)
    assert tuned.lm_inputs(["tv stand"]) == ["television stand"]
