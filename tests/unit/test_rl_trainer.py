"""GRPO through TRL on a tiny Llama with a scripted reward: the policy moves toward the rewarded
rewrites, KL to the reference stays bounded, and a mismatched reference tokenizer fails first."""

from __future__ import annotations

import pytest
import torch

from minielm.config import RLConfig
from minielm.rl.errors import RLInputError
from minielm.rl.trainer import check_same_tokenizer, train_grpo
from tests.unit.rl_fixtures import char_tokenizer, prompt, save_tiny_llama

VOWELS = set("aeiou")
QUERIES = ["red shoe", "blue hat", "tv stand", "usb cable"]


class VowelRewards:
    """Scripted reward: the share of vowels in the rewrite."""

    def trl_reward_functions(self):
        def vowels(completions, **_):
            return [sum(c in VOWELS for c in text) / max(1, len(text)) for text in completions]

        return [vowels], [1.0]


def vowel_probability(model_dir) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = [tokenizer.convert_tokens_to_ids(v) for v in sorted(VOWELS)]
    with torch.no_grad():
        batch = tokenizer([prompt(q) for q in QUERIES], return_tensors="pt", padding=True)
        probs = torch.softmax(model(**batch).logits[:, -1], dim=-1)
    return float(probs[:, ids].sum(dim=-1).mean())


@pytest.mark.slow
def test_grpo_moves_policy_toward_rewarded_rewrites_with_bounded_kl(tmp_path):
    base = save_tiny_llama(tmp_path / "base")
    config = RLConfig(
        num_generations=4, queries_per_step=2, max_steps=8, learning_rate=2e-2, beta=0.05, max_new_tokens=6
    )
    result = train_grpo(
        base, base, QUERIES, [None] * len(QUERIES), VowelRewards(), config, tmp_path / "tuned", prompt_fn=prompt, seed=0
    )
    assert result.steps == 8
    before, after = vowel_probability(base), vowel_probability(tmp_path / "tuned")
    assert after > before + 0.1, (before, after)
    kls = result.series("kl")
    assert len(kls) == 8 and max(kls) > 0
    assert max(kls) < 2.0, kls
    rewards = result.series("reward")
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3


def test_reference_with_another_tokenizer_fails_before_training(tmp_path):
    policy = save_tiny_llama(tmp_path / "policy")
    other = save_tiny_llama(tmp_path / "other", tokenizer=char_tokenizer(extra="XYZ"))
    with pytest.raises(RLInputError, match="does not match the policy's tokenizer"):
        check_same_tokenizer(policy, other)
    with pytest.raises(RLInputError, match="does not match the policy's tokenizer"):
        train_grpo(
            policy,
            other,
            QUERIES,
            [None] * 4,
            VowelRewards(),
            RLConfig(max_steps=1),
            tmp_path / "out",
            prompt_fn=prompt,
        )
    assert not (tmp_path / "out").exists()
