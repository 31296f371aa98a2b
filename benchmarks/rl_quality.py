"""RL quality on the synthetic catalog: relevant products per query (top k, held-out test split) for
the raw query, the student rewriter and the RL-tuned student, over several seeds.

The student is ``--student-dir`` when given (a distilled student saved with save_pretrained).
Without it, each seed trains a stand-in: a small Llama (byte-level BPE fitted here) trained by supervised
sequence-level KD on the oracle rewrites of the train split (what distillation from a perfect
teacher would give), so RL starts from a rewriter that already beats the raw query.
RL: GRPO (minielm.rl.trainer) on train-split queries with the reward terms of minielm.rl.rewards:
retrieval gain on train-split labels, intent-drift and degenerate penalties (no relevance judge
and no served feedback in this offline benchmark: their weights are 0 here).

    .venv/bin/python benchmarks/rl_quality.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from minielm.config import load_settings
from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.models.prompts import format_rewrite_answer, format_rewrite_prompt
from minielm.models.rewriter import encode_rewrite_example
from minielm.rl.policy import DirRewriter
from minielm.rl.retraining import build_reward_model, heldout_metrics
from minielm.rl.trainer import train_grpo
from minielm.search import SearchIndex

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def bpe_tokenizer(texts: list[str], vocab_size: int):
    """A small byte-level BPE fitted to the benchmark's own texts (no pretrained tokenizer ships here):
    short sequences keep the stand-in student cheap, and bytes keep misspellings representable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def train_stand_in_student(
    pairs: list[tuple[str, str]], out_dir: Path, steps: int, seed: int, hidden: int = 96
) -> Path:
    """Supervised sequence-level KD on (noisy query -> oracle rewrite); loss on the answer tokens only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    prompts = [format_rewrite_prompt(q) for q, _ in pairs]
    answers = [format_rewrite_answer(r) for _, r in pairs]
    tokenizer = bpe_tokenizer(prompts + answers, vocab_size=1024)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    encoded = []
    for query, rewrite in pairs:  # the serving rewriter's own encoding (BOS, prompt, answer, EOS)
        example = encode_rewrite_example(tokenizer, query, rewrite, max_prompt_tokens=128, max_answer_tokens=48)
        encoded.append((example["input_ids"], example["labels"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        batch = [encoded[i] for i in rng.choice(len(encoded), size=16)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([x + [0] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        mask = (torch.arange(width)[None, :] < torch.tensor([len(x) for x, _ in batch])[:, None]).long()
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 50) * (1 - step / steps)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            print(f"    student step {step:4d} loss {loss.item():.3f}", flush=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def run_seed(seed: int, args, workdir: Path) -> dict:
    started = time.perf_counter()
    settings = load_settings(
        environ={},
        use_services_state=False,
        overrides=[
            f"seed={seed}",
            f"rl.max_steps={args.rl_steps}",
            f"rl.learning_rate={args.rl_lr}",
            f"rl.num_generations={args.group}",
            f"rl.queries_per_step={args.queries_per_step}",
            f"rl.beta={args.beta}",
            f"rl.temperature={args.temperature}",
            "rl.max_new_tokens=40",
            "rl.reward_weights.judge=0",
            "rl.reward_weights.feedback=0",
            f"rl.intent_embedder={args.embedder}",
        ],
    )
    data = generate_dataset(n_products=args.products, n_queries=args.queries, seed=seed)
    data_dir = write_esci(data, workdir / f"seed{seed}" / "data")
    index = SearchIndex.build(data.products)
    train = data.examples[data.examples["split"] == "train"].drop_duplicates("query_id")
    if args.student_dir:
        student_dir = Path(args.student_dir)
    else:
        print(f"  seed {seed}: training the stand-in student on {len(train)} oracle rewrites", flush=True)
        student_dir = train_stand_in_student(
            list(zip(train["query"], train["canonical_query"])),
            workdir / f"seed{seed}" / "student",
            args.student_steps,
            seed,
            args.student_hidden,
        )
    rewards = build_reward_model(settings, index, data_dir, None, "train")
    rl_queries = train.sample(n=min(args.rl_queries, len(train)), random_state=seed)
    print(f"  seed {seed}: GRPO on {len(rl_queries)} train queries", flush=True)
    result = train_grpo(
        student_dir,
        student_dir,
        rl_queries["query"].tolist(),
        rl_queries["query_id"].tolist(),
        rewards,
        settings.rl,
        workdir / f"seed{seed}" / "rl",
        seed=seed,
    )
    metrics = heldout_metrics(
        settings,
        index,
        data_dir,
        {"raw": None, "distilled": DirRewriter(student_dir, 40), "rl": DirRewriter(workdir / f"seed{seed}" / "rl", 40)},
    )
    row = {
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "train": result.summary(),
        **{name: m["relevant_per_query"] for name, m in metrics.items()},
        "by_noise": {name: m["by_noise"] for name, m in metrics.items()},
    }
    print(
        f"  seed {seed}: raw {row['raw']:.3f}  student {row['distilled']:.3f}  RL {row['rl']:.3f}  "
        f"({row['seconds']} s)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--student-dir", default=None)
    parser.add_argument("--student-steps", type=int, default=800)
    parser.add_argument("--student-hidden", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--rl-steps", type=int, default=40)
    parser.add_argument("--rl-lr", type=float, default=5e-5)
    parser.add_argument("--rl-queries", type=int, default=160)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--queries-per-step", type=int, default=4)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature of the GRPO groups (an overconfident student needs > 1 to explore)",
    )
    parser.add_argument("--embedder", default="ngram_overlap", choices=["ngram_overlap", "minilm"])
    parser.add_argument("--workdir", default=".minielm/runs/bench-rl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    rows = [run_seed(seed, args, workdir) for seed in args.seeds]
    summary = {name: float(np.mean([r[name] for r in rows])) for name in ("raw", "distilled", "rl")}
    summary["rl_vs_distilled"] = summary["rl"] / summary["distilled"] - 1 if summary["distilled"] else None
    print(f"\n{'seed':>6} {'raw':>8} {'student':>8} {'RL':>8} {'RL vs student':>14}")
    for r in rows:
        print(
            f"{r['seed']:>6} {r['raw']:>8.3f} {r['distilled']:>8.3f} {r['rl']:>8.3f} "
            f"{(r['rl'] / r['distilled'] - 1) if r['distilled'] else float('nan'):>+14.1%}"
        )
    print(
        f"{'mean':>6} {summary['raw']:>8.3f} {summary['distilled']:>8.3f} {summary['rl']:>8.3f} "
        f"{summary['rl_vs_distilled'] or float('nan'):>+14.1%}"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"rl_quality_t{args.temperature:g}.json"
    path.write_text(json.dumps({"args": vars(args), "rows": rows, "mean": summary}, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
