"""What gates a rewriter (``minielm eval``, the distillation report, RL's held-out metrics and canary) judges the
rewrites the server would serve: loaded from the one typed config (``settings.serving``), runaway cap included.

The tiny model never ends a rewrite on its own, so its uncapped output (``max_new_tokens``) differs from what
serving returns under ``serving.max_new_tokens_over_query``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from minielm.cli import app
from minielm.config import ServingConfig
from minielm.models.backbones import tiny_llama_config
from minielm.models.ct2_rewriter import has_ctranslate2
from minielm.models.loading import load_model_dir
from minielm.models.rewriter import CausalRewriter
from minielm.models.tokenizer import train_bpe_tokenizer

CAPPED = ServingConfig(max_new_tokens_over_query=1)
UNCAPPED = ServingConfig(max_new_tokens_over_query=None)


@pytest.fixture(scope="module")
def runaway_rewriter(tmp_path_factory):
    torch.manual_seed(0)
    words = ["wireless headphones noise cancel", "blue running shoes", "red cotton hat", "steel water bottle"]
    tokenizer = train_bpe_tokenizer(words * 50, 400)
    config = tiny_llama_config(
        tokenizer, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # a peaked output layer: greedy text, not a uniform mush
        model.lm_head.weight.mul_(6.0)
    directory = tmp_path_factory.mktemp("runaway")
    CausalRewriter(model, tokenizer, version="v-runaway", max_new_tokens=12).save(directory)
    return directory


def served_copy(source, tmp_path, name="model"):
    copy = tmp_path / name
    shutil.copytree(source, copy)
    return copy


def test_the_tiny_model_runs_away_so_the_cap_changes_its_rewrites(runaway_rewriter, tmp_path):
    directory = served_copy(runaway_rewriter, tmp_path)
    queries = ["blue running shoes", "red hat"]
    capped = load_model_dir(directory, "rewriter", CAPPED).rewrite(queries)
    assert capped != load_model_dir(directory, "rewriter", UNCAPPED).rewrite(queries)
    assert capped != CausalRewriter.load(directory).rewrite(queries)  # what the gates loaded before


def test_minielm_eval_judges_the_served_capped_rewrites(runaway_rewriter, tmp_path):
    runner = CliRunner()
    common = ["--set", f"paths.state_dir={tmp_path}", "--set", f"paths.data_dir={tmp_path}/data"]
    common += ["--set", f"paths.reports_dir={tmp_path}/reports", "--set", "serving.max_new_tokens_over_query=1"]
    result = runner.invoke(app, [*common, "data", "generate", "--products", "300", "--queries", "60", "--seed", "2"])
    assert result.exit_code == 0, result.output
    directory = served_copy(runaway_rewriter, tmp_path)
    result = runner.invoke(app, [*common, "eval", "--split", "validation", "--k", "5", "--model", f"tiny={directory}"])
    assert result.exit_code == 0, result.output
    per_query = json.loads((tmp_path / "reports" / "eval.json").read_text())["per_query"]
    raw = {row["query_id"]: row["query"] for row in per_query["raw"]}
    judged = {row["query_id"]: row["query"] for row in per_query["tiny"]}
    ids = sorted(raw)
    queries = [raw[i] for i in ids]
    served = [rows[0] for rows in load_model_dir(directory, "rewriter", CAPPED).rewrite(queries)]
    uncapped = [rows[0] for rows in load_model_dir(directory, "rewriter", UNCAPPED).rewrite(queries)]
    assert [judged[i] for i in ids] == served
    assert served != uncapped
    assert has_ctranslate2(directory)  # judged through the served backend (settings.serving.generation_backend)


def test_rl_judges_and_canaries_the_served_capped_rewrites(runaway_rewriter, tmp_path):
    from minielm.rl.policy import DirRewriter

    directory = served_copy(runaway_rewriter, tmp_path)
    queries = ["blue running shoes", "steel water bottle", "red hat"]
    served = [rows[0] for rows in load_model_dir(directory, "rewriter", CAPPED).rewrite(queries)]
    assert DirRewriter(directory, CAPPED)(queries) == served
    assert DirRewriter(directory, UNCAPPED)(queries) != served


def test_saving_new_weights_drops_the_stale_ctranslate2_export(runaway_rewriter, tmp_path):
    """An export is only checked for presence, so one left beside new weights would be served (and gated)
    instead of them."""
    directory = served_copy(runaway_rewriter, tmp_path)
    load_model_dir(directory, "rewriter", CAPPED)
    assert has_ctranslate2(directory)
    CausalRewriter.load(directory).save(directory)
    assert not has_ctranslate2(directory)
