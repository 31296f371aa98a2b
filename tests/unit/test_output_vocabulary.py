"""A rewriter restricted to its domain's output tokens: Hugging Face and the trimmed CTranslate2 export agree,
every input still tokenizes as before, and the token list travels with the saved model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from minielm.models.backbones import tiny_llama_config
from minielm.models.ct2_rewriter import CTranslate2Rewriter, ct2_dir, export_ctranslate2
from minielm.models.output_vocabulary import (
    OUTPUT_VOCABULARY_FILE,
    OutputVocabularyError,
    byte_token_ids,
    domain_token_ids,
    load_output_vocabulary,
)
from minielm.models.prompts import format_rewrite_answer
from minielm.models.rewriter import CausalRewriter, encode_prompt
from minielm.models.tokenizer import train_bpe_tokenizer

DOMAIN = ["wireless headphones", "blue running shoes", "red hat"]
OTHER_TEXT = ["garden hose reel", "espresso machine steam wand", "yoga mat purple"]
QUERIES = ["wireles hedphones", "blue running shoes for men", "red hat", "espresso machne"]
INSIDE = ["wireless headphones", "red hat", "blue running shoes", "running hat"]  # every token in DOMAIN's


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer((DOMAIN + OTHER_TEXT) * 50, 420)


@pytest.fixture(scope="module")
def model_dirs(tokenizer, tmp_path_factory):
    """The same random model saved twice: with the whole vocabulary and restricted to DOMAIN's tokens."""
    torch.manual_seed(0)
    config = tiny_llama_config(
        tokenizer, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    )
    model = AutoModelForCausalLM.from_config(config)
    kept = domain_token_ids(tokenizer, DOMAIN)
    out_of_domain = next(i for i in tokenizer(" espresso", add_special_tokens=False)["input_ids"] if i not in kept)
    with torch.no_grad():  # a peaked output layer, so confidences differ between tokens
        model.lm_head.weight.mul_(6.0)
        greedy = int(model(torch.tensor([encode_prompt(tokenizer, INSIDE[0])])).logits[0, -1].argmax())
        # the unrestricted model prefers a token outside the domain wherever it would write `greedy`
        model.lm_head.weight[out_of_domain] = 1.5 * model.lm_head.weight[greedy]
    root = tmp_path_factory.mktemp("vocab")
    full = CausalRewriter(model, tokenizer, version="v-full", max_new_tokens=6).save(root / "full")
    trimmed = CausalRewriter(model, tokenizer, version="v-trim", max_new_tokens=6, output_token_ids=kept)
    return full, trimmed.save(root / "trimmed"), kept


def test_domain_tokens_are_the_texts_tokens_plus_special_and_byte_tokens(tokenizer):
    kept = set(domain_token_ids(tokenizer, DOMAIN))
    assert set(tokenizer.all_special_ids) <= kept
    assert len(byte_token_ids(tokenizer)) == 256 and byte_token_ids(tokenizer) <= kept
    assert set(tokenizer(" wireless headphones", add_special_tokens=False)["input_ids"]) <= kept
    assert not set(tokenizer(" espresso", add_special_tokens=False)["input_ids"]) <= kept  # not a domain word
    assert len(kept) < len(tokenizer)


def test_the_token_list_is_saved_and_loaded_with_the_model(model_dirs):
    full, trimmed, kept = model_dirs
    assert CausalRewriter.load(trimmed).output_token_ids == kept
    assert CausalRewriter.load(full).output_token_ids is None
    with pytest.raises(OutputVocabularyError, match="vocabulary of"):
        load_output_vocabulary(trimmed, vocab_size=len(kept) // 2)


def outside(tokenizer, text: str, kept) -> bool:
    """The text, written as a rewrite, has a token the output vocabulary lacks."""
    return not set(tokenizer(format_rewrite_answer(text), add_special_tokens=False)["input_ids"]) <= set(kept)


def test_hugging_face_generation_writes_only_kept_tokens(model_dirs, tokenizer):
    """Every query, also one with a word the domain lacks (it cannot be copied back)."""
    full, trimmed, kept = model_dirs
    assert [outside(tokenizer, q, kept) for q in QUERIES + INSIDE] == [True, True, False, True] + [False] * 4

    def generated_ids(directory):
        rewriter = CausalRewriter.load(directory)
        generate, outputs = rewriter.model.generate, []

        def recording(**kwargs):
            output = generate(**kwargs)
            outputs.append(getattr(output, "sequences", output))  # greedy generation returns a dict with scores
            return output

        rewriter.model.generate = recording
        texts = rewriter.rewrite(QUERIES + INSIDE)
        width = rewriter._left_padded(QUERIES + INSIDE)["input_ids"].shape[1]
        return texts, {int(i) for out in outputs for i in out[:, width:].flatten()} - {rewriter.tokenizer.pad_token_id}

    unrestricted_texts, unrestricted = generated_ids(full)
    restricted_texts, restricted = generated_ids(trimmed)
    assert not unrestricted <= set(kept)  # the random model reaches outside the domain...
    assert restricted <= set(kept)  # ...and the restricted one never does
    assert restricted_texts != unrestricted_texts


def test_trimmed_ctranslate2_export_matches_restricted_hugging_face(model_dirs, tmp_path):
    _, trimmed, kept = model_dirs
    copy = tmp_path / "model"
    shutil.copytree(trimmed, copy)
    export_ctranslate2(copy, quantization="float32")
    vocabulary = json.loads((ct2_dir(copy) / "vocabulary.json").read_text())
    assert len(vocabulary) == CausalRewriter.load(copy).model.config.vocab_size  # every token can be read
    assert vocabulary[: len(kept)] == CausalRewriter.load(copy).tokenizer.convert_ids_to_tokens(kept)

    expected = CausalRewriter.load(copy, max_new_tokens=6).rewrite_with_confidence(QUERIES)
    got = CTranslate2Rewriter.load(copy, max_new_tokens=6).rewrite_with_confidence(QUERIES)
    assert [text for text, _ in got] == [text for text, _ in expected]
    for (_, confidence), (_, reference) in zip(got, expected):
        assert confidence == pytest.approx(reference, rel=1e-2, abs=1e-4)
    assert len({round(c, 3) for _, c in expected}) > 1


def test_an_export_without_a_token_list_keeps_the_whole_vocabulary(model_dirs, tmp_path):
    full, _, _ = model_dirs
    copy = tmp_path / "model"
    shutil.copytree(full, copy)
    assert not (copy / OUTPUT_VOCABULARY_FILE).exists()
    export_ctranslate2(copy, quantization="float32")
    expected = CausalRewriter.load(copy, max_new_tokens=6).rewrite(QUERIES)
    assert CTranslate2Rewriter.load(copy, max_new_tokens=6).rewrite(QUERIES) == expected
