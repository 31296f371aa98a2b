"""The one text format the rewriter and the LM relevance teacher read and write.

Every trainer, server and evaluator builds its inputs here, so a model never sees at serving time a
format it was not trained on. The rewrite answer follows the prompt after one space and ends at the
model's end-of-sequence token (or the first newline).
"""

from __future__ import annotations

import re

REWRITE_INSTRUCTION = "Rewrite the shopping query for product search."
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """One line, single spaces, no leading/trailing space."""
    return _SPACES.sub(" ", str(text)).strip()


def format_rewrite_prompt(query: str) -> str:
    """The prompt whose continuation is the rewrite."""
    return f"{REWRITE_INSTRUCTION}\nQuery: {clean_text(query)}\nRewrite:"


def format_rewrite_answer(rewrite: str) -> str:
    """The training target appended to the prompt (the EOS token follows it)."""
    return " " + clean_text(rewrite)


def extract_rewrite(generated: str) -> str:
    """The rewrite in a generated continuation: its first line, cleaned."""
    return clean_text(generated.strip().split("\n", 1)[0]) if generated.strip() else ""


RELEVANCE_PRODUCT_PREFIX = "Product:"


def relevance_query_suffix(query: str) -> str:
    """The end of a relevance input: the query comes after the product so that, in a causal LM, the
    query tokens can attend to the product text (a tiny model learns the match much faster that way)."""
    return f"\nQuery: {clean_text(query)}\nAnswer:"


def format_relevance_input(query: str, product_text: str) -> str:
    """What the relevance teacher classifies into E/S/C/I."""
    return f"{RELEVANCE_PRODUCT_PREFIX} {clean_text(product_text)}{relevance_query_suffix(query)}"
