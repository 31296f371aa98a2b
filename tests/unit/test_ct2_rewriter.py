"""The CTranslate2 rewriter against the Hugging Face one it is converted from: same rewrites, same confidence."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from minielm.models.backbones import tiny_llama_config
from minielm.models.ct2_rewriter import (
    ConversionError,
    CTranslate2Rewriter,
    export_ctranslate2,
    export_for_serving,
    has_ctranslate2,
)
from minielm.models.rewriter import CausalRewriter
from minielm.models.tokenizer import train_bpe_tokenizer

QUERIES = ["wireles hedphones", "blue running shoes for men", "red hat"]


@pytest.fixture(scope="module")
def rewriter_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = train_bpe_tokenizer(["wireless headphones noise cancel", "blue running shoes", "red hat"] * 50, 400)
    config = tiny_llama_config(
        tokenizer, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # a peaked output layer, so some greedy tokens are confident and others not
        model.lm_head.weight.mul_(6.0)
    directory = tmp_path_factory.mktemp("rewriter")
    CausalRewriter(model, tokenizer, version="v-test", max_new_tokens=6).save(directory)
    return directory


@pytest.fixture(scope="module")
def float32_dir(rewriter_dir, tmp_path_factory):
    import shutil

    copy = tmp_path_factory.mktemp("f32") / "model"
    shutil.copytree(rewriter_dir, copy)
    export_ctranslate2(copy, quantization="float32")
    return copy


def test_greedy_rewrites_and_confidence_match_hugging_face(float32_dir):
    hf = CausalRewriter.load(float32_dir, max_new_tokens=6)
    fast = CTranslate2Rewriter.load(float32_dir, max_new_tokens=6)
    assert fast.version == "v-test"
    expected = hf.rewrite_with_confidence(QUERIES)
    got = fast.rewrite_with_confidence(QUERIES)
    assert [text for text, _ in got] == [text for text, _ in expected]
    for (_, confidence), (_, reference) in zip(got, expected):
        assert confidence == pytest.approx(reference, rel=1e-2, abs=1e-4)
    assert len({round(c, 3) for _, c in expected}) > 1  # the check above compares distinct values


def test_min_confidence_keeps_the_raw_query(float32_dir):
    fast = CTranslate2Rewriter.load(float32_dir, max_new_tokens=6, min_confidence=1.0)
    assert fast.rewrite(["  blue   hat "]) == [["blue hat"]]


def test_beam_and_sampling_return_as_many_rewrites_as_asked(float32_dir):
    fast = CTranslate2Rewriter.load(float32_dir, max_new_tokens=6)
    beams = fast.rewrite(QUERIES, num_return=3)
    assert [len(row) for row in beams] == [3, 3, 3]
    assert beams[0][0] == fast.rewrite(QUERIES[:1])[0][0]  # the best beam is the greedy rewrite here
    assert [len(row) for row in fast.rewrite(QUERIES, num_return=2, do_sample=True)] == [2, 2, 2]
    with pytest.raises(ValueError, match="num_return"):
        fast.rewrite(QUERIES, num_return=0)


def test_export_for_serving_writes_int8_copy_once(rewriter_dir):
    target = export_for_serving(rewriter_dir)
    assert target is not None and has_ctranslate2(rewriter_dir)
    assert export_for_serving(rewriter_dir) is None  # already there
    assert len(CTranslate2Rewriter.load(rewriter_dir, max_new_tokens=4).rewrite(QUERIES)) == 3


def test_unconvertible_model_is_a_conversion_error_and_registration_goes_on(rewriter_dir, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(rewriter_dir, broken, ignore=shutil.ignore_patterns("ctranslate2"))
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "model_type": "no_such_model"}))
    with pytest.raises(ConversionError, match="cannot convert"):
        export_ctranslate2(broken)
    assert export_for_serving(broken) is None and not has_ctranslate2(broken)
    with pytest.raises(ConversionError, match="no ctranslate2/model.bin"):
        CTranslate2Rewriter.load(broken)
    (broken / "ctranslate2").mkdir()
    (broken / "ctranslate2" / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ConversionError, match="cannot load"):
        CTranslate2Rewriter.load(broken)


def test_server_loads_the_ctranslate2_rewriter_converting_a_plain_directory(rewriter_dir, tmp_path):
    import shutil

    import serving  # noqa: F401  (imports kserve with a clean argv)
    from minielm.config import ServingConfig
    from serving.loading import load_model_dir

    plain = tmp_path / "plain"
    shutil.copytree(rewriter_dir, plain, ignore=shutil.ignore_patterns("ctranslate2"))
    assert isinstance(
        load_model_dir(plain, "rewriter", ServingConfig(generation_backend="huggingface")), CausalRewriter
    )
    assert not has_ctranslate2(plain)
    model = load_model_dir(plain, "rewriter", ServingConfig())
    assert isinstance(model, CTranslate2Rewriter) and has_ctranslate2(plain)


def test_server_falls_back_to_hugging_face_with_a_metric(rewriter_dir, tmp_path, monkeypatch):
    import shutil

    import ctranslate2

    import serving  # noqa: F401
    from minielm.config import ServingConfig
    from serving.loading import load_model_dir
    from serving.metrics import GENERATION_FALLBACK

    class Unsupported:
        def __init__(self, directory):
            raise NotImplementedError("architecture not supported")

    monkeypatch.setattr(ctranslate2.converters, "TransformersConverter", Unsupported)
    plain = tmp_path / "plain"
    shutil.copytree(rewriter_dir, plain, ignore=shutil.ignore_patterns("ctranslate2"))
    before = GENERATION_FALLBACK._value.get()
    model = load_model_dir(plain, "rewriter", ServingConfig())
    assert isinstance(model, CausalRewriter)
    assert model.rewrite(QUERIES[:1])[0][0]
    assert GENERATION_FALLBACK._value.get() == before + 1


def test_both_backends_honour_max_new_tokens_in_metadata(float32_dir, tmp_path):
    import json
    import shutil

    copy = tmp_path / "short"
    shutil.copytree(float32_dir, copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**metadata, "max_new_tokens": 2}))
    fast, hf = CTranslate2Rewriter.load(copy), CausalRewriter.load(copy)
    assert fast.max_new_tokens == hf.max_new_tokens == 2
    ids, _ = fast._greedy_with_lowest_log_prob(QUERIES[:1])[0]
    assert len(ids) <= 2


def test_the_intent_guard_applies_through_ctranslate2_as_through_hugging_face(float32_dir, tmp_path):
    import shutil

    from minielm.models.rewrite_guard import RewriteGuard
    from minielm.models.rewriter import GUARD_FILE

    copy = tmp_path / "guarded"
    shutil.copytree(float32_dir, copy)
    RewriteGuard.from_texts(["wireless headphones", "blue running shoes", "red hat"]).save(copy / GUARD_FILE)
    fast, hf = CTranslate2Rewriter.load(copy), CausalRewriter.load(copy)
    assert fast.guard is not None
    assert fast.rewrite(QUERIES) == hf.rewrite(QUERIES)
    # A random model's rewrite loses the query's words, so the guard keeps every query as it was.
    assert fast.rewrite(["blue  running shoes"]) == [["blue running shoes"]]


def test_a_rewrite_stops_at_its_query_length_plus_the_margin_in_both_backends_and_in_any_batch(float32_dir):
    """``max_new_tokens_over_query`` caps each greedy rewrite at its own input's token count plus the margin, alone
    or batched with longer and shorter prompts (CTranslate2 counts steps from the batch's shortest prompt)."""
    queries = ["red hat", "blue running shoes for men wireless headphones noise cancel", "wireles hedphones"]
    fast = CTranslate2Rewriter.load(float32_dir, max_new_tokens=30, max_new_tokens_over_query=1)
    hf = CausalRewriter.load(float32_dir, max_new_tokens=30, max_new_tokens_over_query=1)
    budgets = fast.token_budgets(queries)
    assert budgets == hf.token_budgets(queries) and len(set(budgets)) == 3 and max(budgets) < 30
    batched = fast._greedy_with_lowest_log_prob(queries)
    alone = [fast._greedy_with_lowest_log_prob([query])[0] for query in queries]
    assert [tokens for tokens, _ in batched] == [tokens for tokens, _ in alone]
    assert [len(tokens) for tokens, _ in batched] == budgets  # this random model never ends on its own
    uncapped = CTranslate2Rewriter.load(float32_dir, max_new_tokens=30)
    assert all(len(tokens) == 30 for tokens, _ in uncapped._greedy_with_lowest_log_prob(queries))
    expected = hf.rewrite_with_confidence(queries)
    got = fast.rewrite_with_confidence(queries)
    assert [text for text, _ in got] == [text for text, _ in expected]
    for (_, confidence), (_, reference) in zip(got, expected):
        assert confidence == pytest.approx(reference, rel=1e-2, abs=1e-4)


def test_the_instruction_runs_once_as_a_static_prompt_and_changes_nothing(float32_dir):
    fast = CTranslate2Rewriter.load(float32_dir, max_new_tokens=6)
    instruction = fast._static_prompt
    assert instruction and all(prompt[: len(instruction)] == instruction for prompt in fast._prompts(QUERIES))
    assert fast.tokenizer.convert_tokens_to_string(instruction).lower().strip().endswith("query:")
    calls = []

    class Recording:
        def generate_batch(self, prompts, generator=fast.generator, **options):
            calls.append(options)
            return generator.generate_batch(prompts, **options)

    fast.generator = Recording()
    with_static = fast.rewrite_with_confidence(QUERIES) + [tuple(r) for r in fast.rewrite(QUERIES, num_return=2)]
    assert calls and all(options["static_prompt"] == instruction for options in calls)
    fast._static_prompt = []
    without = fast.rewrite_with_confidence(QUERIES) + [tuple(r) for r in fast.rewrite(QUERIES, num_return=2)]
    assert "static_prompt" not in calls[-1]
    assert with_static == without


def test_prompt_tokens_from_the_rust_tokenizer_are_the_prompt_the_model_was_trained_on(float32_dir):
    from minielm.models.rewriter import encode_prompt
    from minielm.models.tokenizer import encode_texts

    fast = CTranslate2Rewriter.load(float32_dir)
    tokenizer = fast.tokenizer
    texts = [*QUERIES, "Wireless  Headphones 65W", "café crème ünïcode", "<s> tag </s>"]
    assert fast._prompts(texts) == [tokenizer.convert_ids_to_tokens(encode_prompt(tokenizer, q)) for q in texts]
    expected = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert [e.ids for e in encode_texts(tokenizer, texts)] == expected
