"""Online RL of the rewriter on groups of candidate rewrites: GRPO-style advantages or DPO pairs.

For each training query the trainer builds a group of distinct candidates that is sure to carry signal:
the unchanged query, the policy's current greedy rewrite, the top beams, and samples at
``temperature``/``top_p``, up to ``num_generations``. Every candidate gets the reward of
:mod:`minielm.rl.rewards`; a group whose rewards do not spread (max - min below ``min_reward_spread``)
teaches nothing and is dropped (the count is reported). Then either

- ``grpo``: advantage = the reward standardised within its group; the loss is minus the advantage-weighted
  mean token log-probability of each candidate plus ``beta`` x the exact per-token KL to the reference; or
- ``dpo``: the group's best and worst candidates form a (chosen, rejected) pair and the DPO loss
  (Rafailov et al. 2023) with ``dpo_beta`` pushes their log-ratio to the reference apart.

TRL's GRPOTrainer cannot put the raw query, the greedy rewrite or beams into its groups (it only samples),
and on a confident distilled student its sampled groups mostly had zero spread (issue 17: 75-100%), so the
loop is written here. The reference must share the policy's tokenizer: KL over different vocabularies is
meaningless, so a mismatch fails before any training.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from minielm.config import RLConfig
from minielm.logs import get_logger
from minielm.rl.errors import RLInputError

log = get_logger(__name__)

MAX_PROMPT_TOKENS = 256


class Rewarder(Protocol):
    def total(
        self, queries: Sequence[str], rewrites: Sequence[str], query_ids: Sequence[str | None] | None = None
    ) -> np.ndarray: ...


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as error:
        raise RLInputError(f"no usable tokenizer in {model_dir}: {error}") from None


def check_same_tokenizer(policy_dir: Path, reference_dir: Path) -> None:
    """Raise unless both models use the same vocabulary and special tokens."""
    policy, reference = load_tokenizer(policy_dir), load_tokenizer(reference_dir)
    policy_vocab, reference_vocab = policy.get_vocab(), reference.get_vocab()
    if policy_vocab != reference_vocab:
        differing = sorted(set(policy_vocab.items()) ^ set(reference_vocab.items()))[:5]
        raise RLInputError(
            f"reference model {reference_dir} does not match the policy's tokenizer ({policy_dir}): "
            f"vocab sizes {len(reference_vocab)} vs {len(policy_vocab)}, differing entries e.g. {differing}"
        )
    for name in ("eos_token", "pad_token", "bos_token"):
        if getattr(policy, name) != getattr(reference, name):
            raise RLInputError(
                f"reference model {reference_dir} does not match the policy's tokenizer: "
                f"{name} {getattr(reference, name)!r} vs {getattr(policy, name)!r}"
            )


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    history: list[dict] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        return [float(row[key]) for row in self.history if row.get(key) is not None]

    def summary(self) -> dict:
        rewards, kls = self.series("reward"), self.series("kl")
        groups = sum(int(row["groups"]) for row in self.history)
        zero = sum(int(row["zero_spread_groups"]) for row in self.history)
        return {
            "steps": self.steps,
            "reward_first": rewards[0] if rewards else None,
            "reward_last": rewards[-1] if rewards else None,
            "kl_mean": float(np.mean(kls)) if kls else 0.0,
            "kl_max": max(kls) if kls else 0.0,
            "groups": groups,
            "zero_spread_groups": zero,
            "zero_spread_share": zero / groups if groups else None,
            "explored_groups": sum(int(row["explored_groups"]) for row in self.history),
            "mean_group_size": float(np.mean(self.series("mean_group_size"))) if self.history else None,
        }


def candidate_groups(
    rewriter, queries: Sequence[str], group_size: int, beams: int, served: Sequence[Sequence[str]] | None = None
) -> list[list[str]]:
    """Distinct candidates per query: the query itself, the greedy rewrite, the rewrites it was served (with
    the exploration bucket's alternatives, whose observed feedback differs), the top beams, then samples."""
    raw = [" ".join(q.split()) for q in queries]
    greedy = [text for text, _ in rewriter.rewrite_with_confidence(queries)]
    served = served if served is not None else [[] for _ in queries]
    beam = rewriter.rewrite(queries, num_return=beams) if beams > 1 else [[] for _ in queries]
    sampled = rewriter.rewrite(queries, num_return=group_size, do_sample=True)
    groups = []
    for parts in zip(raw, greedy, served, beam, sampled):
        ordered = [parts[0], parts[1], *parts[2], *parts[3], *parts[4]]
        groups.append([c for c in dict.fromkeys(c for c in ordered if c)][:group_size])
    return groups


def answer_log_probs(model, tokenizer, queries: Sequence[str], rewrites: Sequence[str], max_answer_tokens: int):
    """Per candidate: summed answer-token log-probability, answer token count, and the answer-position
    log-softmax rows (for the KL)."""
    from minielm.models.rewriter import collate_rewrite_examples, encode_rewrite_example

    examples = [
        encode_rewrite_example(tokenizer, q, r, MAX_PROMPT_TOKENS, max_answer_tokens) for q, r in zip(queries, rewrites)
    ]
    batch = collate_rewrite_examples(examples, tokenizer.pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    mask = targets != -100
    log_softmax = F.log_softmax(logits, dim=-1)
    token = log_softmax.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return token.sum(-1), mask.sum(-1), log_softmax, mask


def group_loss(config: RLConfig, rewards: np.ndarray, policy_out, reference_out) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one group and its mean per-token KL(policy || reference)."""
    seq_logp, n_tokens, policy_rows, mask = policy_out
    ref_logp, _, ref_rows, _ = reference_out
    per_position = (policy_rows.exp() * (policy_rows - ref_rows)).sum(-1)
    kl = (per_position * mask).sum() / mask.sum().clamp(min=1)
    if config.trainer == "dpo":
        best, worst = int(np.argmax(rewards)), int(np.argmin(rewards))
        margin = (seq_logp[best] - ref_logp[best]) - (seq_logp[worst] - ref_logp[worst])
        return -F.logsigmoid(config.dpo_beta * margin), kl
    advantages = torch.tensor((rewards - rewards.mean()) / (rewards.std() + 1e-6), dtype=torch.float32)
    mean_logp = seq_logp / n_tokens.clamp(min=1)
    return -(advantages * mean_logp).mean() + config.beta * kl, kl


def train_policy(
    policy_dir: Path,
    reference_dir: Path,
    queries: Sequence[str],
    query_ids: Sequence[str | None],
    rewards: Rewarder,
    config: RLConfig,
    output_dir: Path,
    seed: int = 0,
    served_rewrites: Sequence[Sequence[str]] | None = None,
) -> TrainResult:
    """``config.max_steps`` updates from ``policy_dir`` (``config.trainer``: grpo or dpo); the tuned
    model, with every side file of the policy, lands in ``output_dir``. ``served_rewrites``: per query, the
    rewrites it was served (greedy and exploration alternatives), always members of its group."""
    from transformers import AutoModelForCausalLM

    from minielm.models.rewriter import CausalRewriter

    policy_dir, reference_dir, output_dir = Path(policy_dir), Path(reference_dir), Path(output_dir)
    check_same_tokenizer(policy_dir, reference_dir)
    if len(queries) != len(query_ids):
        raise RLInputError(f"training set: {len(queries)} queries but {len(query_ids)} query ids")
    if not queries:
        raise RLInputError("training set is empty: no queries to sample rewrites for")
    served_rewrites = served_rewrites if served_rewrites is not None else [[] for _ in queries]
    if len(served_rewrites) != len(queries):
        raise RLInputError(f"training set: {len(queries)} queries but {len(served_rewrites)} served-rewrite lists")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    rewriter = CausalRewriter.load(
        policy_dir, max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
    )
    policy, tokenizer = rewriter.model, rewriter.tokenizer
    reference = AutoModelForCausalLM.from_pretrained(str(reference_dir), dtype=torch.float32).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=0.0)
    order = list(range(len(queries)))
    history: list[dict] = []
    log.info("rl training started", policy=str(policy_dir), trainer=config.trainer, queries=len(queries))
    for step in tqdm(range(config.max_steps), desc=f"rl {config.trainer}", unit="step"):
        if len(order) < config.queries_per_step:
            order += rng.sample(range(len(queries)), len(queries))
        picked, order = order[: config.queries_per_step], order[config.queries_per_step :]
        batch_q = [queries[i] for i in picked]
        prompts = rewriter.lm_inputs(batch_q)
        policy.eval()
        groups = candidate_groups(
            rewriter, batch_q, config.num_generations, config.beam_candidates, [served_rewrites[i] for i in picked]
        )
        policy.train()
        losses, kls, means, zero = [], [], [], 0
        for i, query, prompt, group in zip(picked, batch_q, prompts, groups):
            scores = np.asarray(rewards.total([query] * len(group), group, [query_ids[i]] * len(group)), dtype=float)
            means.append(float(scores.mean()))
            if len(group) < 2 or scores.max() - scores.min() < config.min_reward_spread:
                zero += 1
                continue
            policy_out = answer_log_probs(policy, tokenizer, [prompt] * len(group), group, config.max_new_tokens)
            with torch.no_grad():
                reference_out = answer_log_probs(
                    reference, tokenizer, [prompt] * len(group), group, config.max_new_tokens
                )
            loss, kl = group_loss(config, scores, policy_out, reference_out)
            losses.append(loss)
            kls.append(float(kl.detach()))
        if losses:
            torch.stack(losses).mean().backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        history.append(
            {
                "step": step + 1,
                "reward": float(np.mean(means)),
                "kl": float(np.mean(kls)) if kls else None,
                "loss": float(torch.stack(losses).mean().detach()) if losses else None,
                "groups": len(groups),
                "zero_spread_groups": zero,
                "explored_groups": sum(len(served_rewrites[i]) > 1 for i in picked),
                "mean_group_size": float(np.mean([len(g) for g in groups])),
            }
        )
    policy.eval()
    _export(policy_dir, policy, tokenizer, output_dir)
    result = TrainResult(output_dir=output_dir, steps=config.max_steps, history=history)
    log.info("rl training finished", **result.summary())
    return result


def _export(policy_dir: Path, model, tokenizer, output_dir: Path) -> None:
    """Keep every side file of the policy (e.g. the rewriter's metadata.json with its selective-rewriting
    threshold) and its front end (the LM was tuned reading it), then the new weights. A CTranslate2 export is
    not kept, and one left in ``output_dir`` by an earlier run is removed: it holds old weights, and the gate
    and the server would load it."""
    from minielm.models.ct2_rewriter import remove_exports
    from minielm.models.rewriter import FRONT_END_DIR

    output_dir.mkdir(parents=True, exist_ok=True)
    remove_exports(output_dir)
    for path in policy_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, output_dir / path.name)
    if (policy_dir / FRONT_END_DIR).is_dir():
        shutil.copytree(policy_dir / FRONT_END_DIR, output_dir / FRONT_END_DIR, dirs_exist_ok=True)
    model.config._name_or_path = str(output_dir)
    model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))


@torch.no_grad()
def mean_token_kl(
    policy, reference, tokenizer, queries: Sequence[str], rewrites: Sequence[str], max_tokens: int, batch: int = 16
) -> float:
    """Mean over answer tokens of KL(policy || reference) of the next-token distributions."""
    total, count = 0.0, 0
    for start in range(0, len(queries), batch):
        q, r = queries[start : start + batch], rewrites[start : start + batch]
        _, _, policy_rows, mask = answer_log_probs(policy, tokenizer, q, r, max_tokens)
        _, _, reference_rows, _ = answer_log_probs(reference, tokenizer, q, r, max_tokens)
        per_position = (policy_rows.exp() * (policy_rows - reference_rows)).sum(-1)
        total += float((per_position * mask).sum())
        count += int(mask.sum())
    return total / count if count else 0.0
