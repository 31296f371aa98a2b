"""Training throughput (tokens/s) and MFU of a decoder shape through the DeepSpeed training core.

MFU = 6 * N * tokens/s / peak FLOP/s, with N the model's parameter count (embeddings included;
the non-embedding figure is reported too). Rows are packed: every row is ``--seq-len`` real tokens
(documents concatenated, no padding), so every token counted is a trained token. The model is
randomly initialised from a config (nothing is downloaded). The same script runs on CUDA (bf16,
sdpa, fused AdamW by default) and on CPU (fp32, torch AdamW); each run appends one record with
all its settings to ``benchmarks/results/train_throughput.json``.

    # H100/H200, Qwen2-0.5B shape (494M parameters)
    python benchmarks/train_throughput.py --shape qwen2-0.5b --micro-batch 16 --seq-len 512 --zero-stage 0
    # CPU, the default teacher (SmolLM2-135M shape) and the tiny toy teacher
    python benchmarks/train_throughput.py --shape smollm2 --micro-batch 8 --seq-len 64 --steps 4 --cpu-threads 2
    python benchmarks/train_throughput.py --shape tiny --micro-batch 32 --seq-len 64 --steps 20 --cpu-threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "train_throughput.json"
# Dense bf16 peak FLOP/s by device name fragment (tensor cores, no sparsity).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def model_config(shape: str, seq_len: int, attn: str):
    from transformers import LlamaConfig

    from minielm.models.backbones import qwen2_0_5b_config

    if shape == "qwen2-0.5b":
        config = qwen2_0_5b_config(max_positions=max(seq_len, 4096))
    elif shape == "smollm2":  # SmolLM2-135M(-Instruct)
        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=max(seq_len, 2048),
            tie_word_embeddings=True,
            rope_theta=100000.0,
        )
    elif shape == "tiny":  # the toy teacher (TinyBackboneConfig defaults)
        from minielm.teachers.config import TinyBackboneConfig

        tiny = TinyBackboneConfig()
        config = LlamaConfig(
            vocab_size=tiny.vocab_size,
            hidden_size=tiny.hidden_size,
            intermediate_size=tiny.intermediate_size,
            num_hidden_layers=tiny.num_layers,
            num_attention_heads=tiny.num_heads,
            num_key_value_heads=tiny.num_kv_heads,
            max_position_embeddings=max(seq_len, tiny.max_positions),
            tie_word_embeddings=True,
        )
    else:
        raise SystemExit(f"--shape must be qwen2-0.5b, smollm2 or tiny, got {shape!r}")
    config._attn_implementation = attn
    return config


def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    return next((flops for key, flops in PEAK_FLOPS.items() if key in device_name), None)


def run(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(REPO))
    import torch
    from transformers import AutoModelForCausalLM

    from minielm.training.config import TrainingConfig
    from minielm.training.engine import DeepSpeedTrainer

    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    config = model_config(args.shape, args.seq_len, args.attn if cuda or args.attn != "flash_attention_2" else "sdpa")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if args.activation_checkpointing:
        model.gradient_checkpointing_enable()
    n_params = sum(p.numel() for p in model.parameters())
    n_embedding = model.get_input_embeddings().weight.numel()
    training = TrainingConfig(
        max_steps=args.warmup + args.steps,
        micro_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=1e-4,
        warmup_steps=0,
        precision=args.precision,
        zero_stage=args.zero_stage,
        optimizer=args.optimizer if cuda or args.optimizer != "fused_adamw" else "torch_adamw",
        checkpoint_every=0,
        progress=False,
        cpu_threads=args.cpu_threads,
    )
    with tempfile.TemporaryDirectory() as workdir:
        trainer = DeepSpeedTrainer(model, training, workdir)
        if args.compile:
            trainer.engine.compile()
        generator = torch.Generator().manual_seed(1)

        def micro_batch():
            ids = torch.randint(0, config.vocab_size, (args.micro_batch, args.seq_len), generator=generator)
            return {"input_ids": ids}

        def loss_fn(engine, batch):
            return engine(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss

        step_times = []
        for step in range(args.warmup + args.steps):
            batches = [micro_batch() for _ in range(args.grad_accum)]
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            loss = trainer.step(loss_fn, batches)
            if cuda:
                torch.cuda.synchronize()
            if step >= args.warmup:
                step_times.append(time.perf_counter() - started)
            print(f"step {step + 1}: {time.perf_counter() - started:.3f}s loss {loss:.4f}", flush=True)
    tokens_per_step = args.micro_batch * args.grad_accum * args.seq_len * trainer.world_size
    seconds = sum(step_times)
    tokens_per_s = tokens_per_step * len(step_times) / seconds
    device_name = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    peak = peak_flops(device_name, args.peak_tflops) if cuda or args.peak_tflops else None
    record = {
        "shape": args.shape,
        "parameters": n_params,
        "non_embedding_parameters": n_params - n_embedding,
        "device": "cuda" if cuda else "cpu",
        "device_name": device_name,
        "world_size": trainer.world_size,
        "zero_stage": args.zero_stage,
        "precision": trainer.precision,
        "optimizer": training.optimizer,
        "attention": config._attn_implementation,
        "activation_checkpointing": args.activation_checkpointing,
        "compile": args.compile,
        "micro_batch": args.micro_batch,
        "grad_accum": args.grad_accum,
        "seq_len": args.seq_len,
        "packing": True,
        "cpu_threads": args.cpu_threads if not cuda else None,
        "timed_steps": len(step_times),
        "warmup_steps": args.warmup,
        "seconds_per_step": round(seconds / len(step_times), 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(6 * n_params * tokens_per_s / peak, 4) if peak else None,
        "peak_flops": peak,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "host_load_average_1m": round(os.getloadavg()[0], 2),
        "host_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
    }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2-0.5b", choices=["qwen2-0.5b", "smollm2", "tiny"])
    parser.add_argument("--zero-stage", type=int, default=0, choices=[0, 1, 2, 3])
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--optimizer", default="fused_adamw", choices=["torch_adamw", "fused_adamw", "deepspeed_adam"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="DeepSpeed engine.compile() (torch.compile)")
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: by GPU name)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    record = run(args)
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    records.append(record)
    args.out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
