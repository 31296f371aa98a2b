"""The DeepSpeed training core on CPU: tiny Llama models, a few real engine steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from minielm.errors import InputError
from minielm.training.config import TrainingConfig
from minielm.training.engine import ShardedMicroBatches, lr_multiplier, train

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def counting_data(n: int = 64) -> list[torch.Tensor]:
    return [torch.arange(i % 10, i % 10 + 16) for i in range(n)]


def collate(rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.stack(rows)}


def lm_loss(model, batch):
    return model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss


def test_loss_goes_down_parameters_change_and_export_reloads(tmp_path):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainingConfig(
        max_steps=24,
        micro_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=3e-3,
        warmup_steps=2,
        checkpoint_every=8,
        progress=False,
        cpu_threads=1,
    )
    result = train(model, lm_loss, config, tmp_path, dataset=counting_data(), collate_fn=collate)

    assert result.steps == 24 and len(result.losses) == 24
    assert sum(result.losses[-4:]) / 4 < 0.7 * sum(result.losses[:4]) / 4
    exported = AutoModelForCausalLM.from_pretrained(result.export_dir)
    changed = [k for k in before if not torch.equal(before[k], exported.state_dict()[k])]
    assert len(changed) == len(before)
    probe = torch.arange(3, 19)[None]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(exported(probe).logits, model(probe).logits, atol=1e-6)
    log_lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log_lines] == list(range(1, 25))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000016", "step-00000024"]


def test_trainable_top_layers_trains_only_the_top_layers_and_the_final_norm(tmp_path):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainingConfig(
        max_steps=4, micro_batch_size=8, warmup_steps=0, checkpoint_every=0, progress=False, cpu_threads=1
    )
    result = train(
        model,
        lm_loss,
        config.model_copy(update={"trainable_top_layers": 1}),
        tmp_path,
        dataset=counting_data(),
        collate_fn=collate,
    )

    exported = AutoModelForCausalLM.from_pretrained(result.export_dir).state_dict()
    changed = {k for k in before if not torch.equal(before[k], exported[k])}
    # This tiny model's LM head is not tied to the embeddings: a head outside the base model keeps training.
    assert changed and all(k.startswith(("model.layers.1.", "model.norm.", "lm_head.")) for k in changed)
    assert any(k.startswith("model.layers.1.") for k in changed) and "model.norm.weight" in changed


def test_trainable_top_layers_beyond_the_model_names_the_setting(tmp_path):
    config = TrainingConfig(max_steps=1, warmup_steps=0, progress=False, cpu_threads=1, trainable_top_layers=3)
    with pytest.raises(InputError, match="trainable_top_layers is 3, but the model has only 2 layers"):
        train(tiny_llama(), lm_loss, config, tmp_path, dataset=counting_data(), collate_fn=collate)


@pytest.mark.parametrize("zero_stage,precision", [(1, "fp32"), (2, "bf16"), (3, "bf16")])
def test_zero_stages_and_bf16_train_and_export(tmp_path, zero_stage, precision):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainingConfig(
        max_steps=3,
        micro_batch_size=8,
        learning_rate=3e-3,
        warmup_steps=0,
        zero_stage=zero_stage,
        precision=precision,
        checkpoint_every=2,
        progress=False,
        cpu_threads=1,
    )
    result = train(model, lm_loss, config, tmp_path, dataset=counting_data(), collate_fn=collate)

    assert result.steps == 3 and result.precision == precision
    exported = AutoModelForCausalLM.from_pretrained(result.export_dir)
    assert exported.dtype == torch.float32
    assert all(not torch.equal(before[k], v) for k, v in exported.state_dict().items())


def test_run_that_already_finished_only_reexports(tmp_path):
    config = TrainingConfig(max_steps=2, micro_batch_size=8, warmup_steps=0, progress=False, cpu_threads=1)
    train(tiny_llama(), lm_loss, config, tmp_path, dataset=counting_data(), collate_fn=collate)
    again = train(tiny_llama(seed=1), lm_loss, config, tmp_path, dataset=counting_data(), collate_fn=collate)
    assert again.resumed_from_step == 2 and again.losses == [] and again.steps == 2


KILLABLE_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests_dir!r})
    from test_training_engine import tiny_llama, counting_data, collate, lm_loss
    from minielm.training.config import TrainingConfig
    from minielm.training.engine import train

    config = TrainingConfig(max_steps=12, micro_batch_size=8, gradient_accumulation_steps=2, learning_rate=3e-3,
                            warmup_steps=2, checkpoint_every=3, progress=False, cpu_threads=1)
    delay = float(sys.argv[2])
    result = train(tiny_llama(), lm_loss, config, sys.argv[1], dataset=counting_data(), collate_fn=collate,
                   on_step=lambda step, loss: time.sleep(delay))
    print("RESULT", result.steps, result.resumed_from_step, flush=True)
""")


def _run_script(tmp_path: Path) -> Path:
    script = tmp_path / "killable_run.py"
    script.write_text(KILLABLE_RUN.format(tests_dir=str(Path(__file__).parent)))
    return script


@pytest.mark.slow
def test_kill_mid_run_resumes_from_last_checkpoint_with_the_same_result(tmp_path):
    script = _run_script(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    victim = subprocess.Popen(
        [sys.executable, str(script), str(killed_dir), "0.5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    latest = killed_dir / "checkpoints" / "latest"
    deadline = time.time() + 180
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() >= "step-00000006"):
        assert victim.poll() is None, victim.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert latest.is_file(), "the run never wrote a checkpoint"
    killed_at = int(latest.read_text().strip().split("-")[1])
    assert 6 <= killed_at < 12

    resumed = subprocess.run(
        [sys.executable, str(script), str(killed_dir), "0"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"RESULT 12 {killed_at}" in resumed.stdout
    straight = subprocess.run(
        [sys.executable, str(script), str(straight_dir), "0"], env=env, capture_output=True, text=True, timeout=300
    )
    assert "RESULT 12 0" in straight.stdout, straight.stderr[-3000:]

    resumed_model = AutoModelForCausalLM.from_pretrained(killed_dir / "final")
    straight_model = AutoModelForCausalLM.from_pretrained(straight_dir / "final")
    for key, value in straight_model.state_dict().items():
        assert torch.allclose(value, resumed_model.state_dict()[key], atol=1e-6), key


def test_micro_batches_are_deterministic_and_resume_mid_epoch():
    data = list(range(20))
    stream = ShardedMicroBatches(data, list, micro_batch_size=3, rank=0, world_size=2, seed=7)
    iterator = stream(0)
    run = [next(iterator) for _ in range(10)]
    resumed = stream(6)
    assert [next(resumed) for _ in range(4)] == run[6:]
    other_rank = ShardedMicroBatches(data, list, micro_batch_size=3, rank=1, world_size=2, seed=7)(0)
    epoch_rank0 = sum(run[:4], [])
    epoch_rank1 = sum([next(other_rank) for _ in range(4)], [])
    assert sorted(epoch_rank0 + epoch_rank1) == data


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    config = TrainingConfig(max_steps=100, warmup_steps=10, min_learning_rate_ratio=0.1)
    factor = lr_multiplier(config)
    warmup = [factor(s) for s in range(10)]
    assert warmup == sorted(warmup) and warmup[-1] < 1.0
    assert factor(10) == pytest.approx(1.0)
    assert factor(100) == pytest.approx(0.1)
    assert factor(55) == pytest.approx(0.55)


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"zero_stage": 4}, "zero_stage"),
        ({"precision": "fp16"}, "precision"),
        ({"max_steps": 5, "warmup_steps": 6}, "warmup_steps"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"micro_batchsize": 4}, "micro_batchsize"),
    ],
)
def test_bad_training_config_names_the_field(overrides, field):
    with pytest.raises(ValidationError, match=field):
        TrainingConfig(**overrides)


def test_data_arguments_are_checked_before_the_engine_starts(tmp_path):
    with pytest.raises(ValueError, match="either dataset"):
        train(tiny_llama(), lm_loss, TrainingConfig(), tmp_path)
    with pytest.raises(ValueError, match="collate_fn"):
        train(tiny_llama(), lm_loss, TrainingConfig(), tmp_path, dataset=[1, 2])


TWO_RANK_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests_dir!r})
    import torch.distributed as dist
    from test_training_engine import tiny_llama, counting_data, collate, lm_loss
    from minielm.training.config import TrainingConfig
    from minielm.training.engine import train

    config = TrainingConfig(max_steps=3, micro_batch_size=4, learning_rate=3e-3, warmup_steps=0, zero_stage=2,
                            checkpoint_every=2, progress=False, cpu_threads=1)
    result = train(tiny_llama(), lm_loss, config, sys.argv[1], dataset=counting_data(), collate_fn=collate)
    print("RANK", dist.get_rank(), "WORLD", result.world_size, "STEPS", result.steps, flush=True)
""")


@pytest.mark.slow
def test_two_ranks_with_torchrun(tmp_path):
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANK_RUN.format(tests_dir=str(Path(__file__).parent)))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "RANK 0 WORLD 2 STEPS 3" in done.stdout and "RANK 1 WORLD 2 STEPS 3" in done.stdout
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert exported.num_parameters() == tiny_llama().num_parameters()
    assert (tmp_path / "run" / "checkpoints" / "step-00000003").is_dir()


def test_defaulted_process_group_variables_do_not_leak_to_child_processes(tmp_path, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    config = TrainingConfig(max_steps=1, micro_batch_size=8, warmup_steps=0, progress=False, cpu_threads=1)
    train(tiny_llama(), lm_loss, config, tmp_path, dataset=counting_data(), collate_fn=collate, export=False)
    assert "MASTER_PORT" not in os.environ
    again = train(
        tiny_llama(),
        lm_loss,
        config.model_copy(update={"max_steps": 2}),
        tmp_path,
        dataset=counting_data(),
        collate_fn=collate,
        export=False,
    )
    assert again.steps == 2
