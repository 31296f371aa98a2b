"""GRPO updates of the rewriter with TRL's ``GRPOTrainer`` and our Python reward functions.

For each training query the trainer samples ``num_generations`` rewrites, scores them with the
reward terms, turns the rewards into group-relative advantages and takes a clipped policy-gradient
step with a KL penalty (``beta``) to the reference model. TRL builds the reference from the policy
config's model id, so we point that id at the reference directory (a model made in memory has no id,
and TRL then fails with "Repo id must use alphanumeric chars"; it must come from a saved dir). The
reference must share the policy's tokenizer: KL over different vocabularies is meaningless, so a
mismatch fails before any training.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minielm.config import RLConfig
from minielm.logs import get_logger
from minielm.rl.errors import RLInputError
from minielm.rl.rewards import RewardModel

log = get_logger(__name__)

PromptFn = Callable[[str], str]


def default_prompt_fn() -> PromptFn:
    from minielm.models.prompts import format_rewrite_prompt

    return format_rewrite_prompt


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
        return [float(row[key]) for row in self.history if key in row]

    def summary(self) -> dict:
        rewards, kls = self.series("reward"), self.series("kl")
        return {
            "steps": self.steps,
            "reward_first": rewards[0] if rewards else None,
            "reward_last": rewards[-1] if rewards else None,
            "kl_mean": sum(kls) / len(kls) if kls else None,
            "kl_max": max(kls) if kls else None,
        }


def bos_prefix(tokenizer) -> str:
    """The BOS text to put before a prompt so its ids start with BOS, as the serving rewriter's prompts do
    (empty when the tokenizer adds BOS itself or has none)."""
    if tokenizer.bos_token is None or tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        return ""
    return tokenizer.bos_token


def _training_rows(
    queries: Sequence[str], query_ids: Sequence[str | None], prompt_fn: PromptFn, prefix: str = ""
) -> list[dict]:
    if len(queries) != len(query_ids):
        raise RLInputError(f"training set: {len(queries)} queries but {len(query_ids)} query ids")
    rows = [{"prompt": prefix + prompt_fn(q), "query": q, "query_id": qid or ""} for q, qid in zip(queries, query_ids)]
    if not rows:
        raise RLInputError("training set is empty: no queries to sample rewrites for")
    return rows


def train_grpo(
    policy_dir: Path,
    reference_dir: Path,
    queries: Sequence[str],
    query_ids: Sequence[str | None],
    rewards: RewardModel,
    config: RLConfig,
    output_dir: Path,
    prompt_fn: PromptFn | None = None,
    seed: int = 0,
) -> TrainResult:
    """Run ``config.max_steps`` GRPO steps from ``policy_dir``; save the tuned model to ``output_dir``."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    policy_dir, reference_dir, output_dir = Path(policy_dir), Path(reference_dir), Path(output_dir)
    if config.beta > 0:
        check_same_tokenizer(policy_dir, reference_dir)
    prompt_fn = prompt_fn or default_prompt_fn()
    tokenizer = load_tokenizer(policy_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_list(_training_rows(queries, query_ids, prompt_fn, bos_prefix(tokenizer)))
    torch.manual_seed(seed)
    policy = AutoModelForCausalLM.from_pretrained(str(policy_dir), dtype=torch.float32)
    policy.config._name_or_path = str(reference_dir)  # TRL builds the KL reference from this id
    funcs, weights = rewards.trl_reward_functions()
    args = GRPOConfig(
        output_dir=str(output_dir / "trl"),
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        per_device_train_batch_size=config.queries_per_step * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        beta=config.beta,
        epsilon=config.epsilon,
        temperature=config.temperature,
        reward_weights=weights,
        logging_steps=1,
        save_strategy="no",
        seed=seed,
        data_seed=seed,
        disable_tqdm=False,
    )
    trainer = GRPOTrainer(
        model=policy, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    log.info(
        "rl training started",
        policy=str(policy_dir),
        reference=str(reference_dir),
        queries=len(dataset),
        steps=config.max_steps,
        group=config.num_generations,
    )
    trainer.train()
    history = [row for row in trainer.state.log_history if "reward" in row]
    _export(policy_dir, trainer.model, tokenizer, output_dir)
    shutil.rmtree(output_dir / "trl", ignore_errors=True)
    result = TrainResult(output_dir=output_dir, steps=trainer.state.global_step, history=history)
    log.info("rl training finished", **result.summary())
    return result


def _export(policy_dir: Path, model, tokenizer, output_dir: Path) -> None:
    """Keep every side file of the policy (e.g. the rewriter's metadata.json with its selective-rewriting
    threshold), then the new weights."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in policy_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, output_dir / path.name)
    model.config._name_or_path = str(output_dir)
    model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))


@torch.no_grad()
def mean_token_kl(policy, reference, tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> float:
    """Mean over completion tokens of KL(policy || reference) of the next-token distributions."""
    total, count = 0.0, 0
    for prompt, completion in zip(prompts, completions):
        prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        full_ids = tokenizer(prompt + completion, return_tensors="pt")["input_ids"]
        n_prompt = prompt_ids.shape[1]
        if full_ids.shape[1] <= n_prompt:
            continue
        positions = slice(n_prompt - 1, full_ids.shape[1] - 1)
        log_p = torch.log_softmax(policy(full_ids).logits[0, positions].float(), dim=-1)
        log_q = torch.log_softmax(reference(full_ids).logits[0, positions].float(), dim=-1)
        total += float((log_p.exp() * (log_p - log_q)).sum())
        count += log_p.shape[0]
    return total / count if count else 0.0
