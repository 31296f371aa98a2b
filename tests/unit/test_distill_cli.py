"""``minielm distill``: bad input exits 2 with a message naming the problem, before any training."""

from __future__ import annotations

from typer.testing import CliRunner

from minielm.cli import app
from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset


def _invoke(*args: str):
    return CliRunner().invoke(app, ["distill", *args])


def test_missing_directories_exit_2_naming_the_option(tmp_path):
    result = _invoke(
        "rewriter", "--data", str(tmp_path / "nope"), "--teacher", str(tmp_path), "--output", str(tmp_path)
    )
    assert result.exit_code == 2 and "--data" in result.output
    result = _invoke(
        "relevance", "--data", str(tmp_path), "--teacher", str(tmp_path / "nope"), "--output", str(tmp_path)
    )
    assert result.exit_code == 2 and "--teacher" in result.output


def test_teacher_with_another_tokenizer_exits_2_before_training(tmp_path):
    from transformers import AutoModelForCausalLM

    from minielm.models.backbones import tiny_llama_config
    from minielm.models.rewriter import CausalRewriter
    from minielm.models.tokenizer import train_bpe_tokenizer

    dataset = generate_dataset(n_products=60, n_queries=12, seed=2)
    data_dir = write_esci(dataset, tmp_path / "data")
    tokenizer = train_bpe_tokenizer(dataset.examples["query"].tolist() * 3, vocab_size=300)
    model = AutoModelForCausalLM.from_config(
        tiny_llama_config(tokenizer, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64)
    )
    teacher_dir = CausalRewriter(model, tokenizer).save(tmp_path / "teacher")
    other = train_bpe_tokenizer(["entirely unrelated text for a different vocabulary"] * 4, vocab_size=300)
    other.save_pretrained(tmp_path / "other-tokenizer")
    result = _invoke(
        "rewriter",
        "--data",
        str(data_dir),
        "--teacher",
        str(teacher_dir),
        "--output",
        str(tmp_path / "out"),
        "--tokenizer",
        str(tmp_path / "other-tokenizer"),
        "--toy",
    )
    assert result.exit_code == 2, result.output
    assert "does not match the teacher's" in result.output
    assert not (tmp_path / "out" / "model").exists()
