"""Train the rewriter from data that has no rewrite labels (the MiniELM paper's distillation source).

Real ESCI-format data has queries, products and relevance judgments, but no ``canonical_query``. Here
each training query gets candidate rewrites, and a candidate is *kept* only when

1. it retrieves more relevant products in the top k than the query itself (judged labels where they
   exist; for retrieved products nobody judged, an optional relevance model's score), and
2. it keeps the query's intent: every query word the catalog knows, every negation and every number
   survives (words the catalog does not know may be corrected; retrieval verified that it helped).

Candidates come from two sources, and every kept pair records which:

- ``lm``: the teacher LM itself (beam search and sampling), once it has been trained a first round;
- ``vocabulary``: rule-based spelling normalisation against the catalog vocabulary (closest known
  word by edit distance, abbreviation expansion, split and joined words, filler removal), and
  pseudo-relevance feedback for an unknown word spelling cannot fix (title words of the products the
  rest of the query retrieves, tried in its place).

The kept (query, best candidate) pairs, plus identity pairs of the kept rewrites, are the training
data of the teacher (:func:`minielm.teachers.rewriter.train_rewriter_teacher`), round after round;
the student then distils from that teacher as usual. A dataset without a validation split gets one,
by query. Data on which no candidate improves retrieval stops with :class:`LabelFreeError`.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import OSA
from tqdm import tqdm

from minielm.data.esci import (
    CANONICAL_QUERY,
    ESCI_LABEL,
    EXAMPLES_FILE,
    NOISE,
    PRODUCT_ID,
    PRODUCT_TITLE,
    PRODUCTS_FILE,
    QUERY,
    QUERY_ID,
    SPLIT,
    EsciData,
)
from minielm.logs import get_logger
from minielm.models.prompts import clean_text
from minielm.models.rewrite_guard import FILLER_WORDS, content_mask, is_abbreviation, is_protected, words
from minielm.teachers.data import TeacherDataError, load_teacher_data, product_texts

log = get_logger(__name__)

LM_SOURCE = "lm"
VOCABULARY_SOURCE = "vocabulary"
KEPT_PAIRS_FILE = "label_free_pairs.parquet"
KEPT_STATS_FILE = "label_free_pairs.json"


class LabelFreeError(TeacherDataError):
    """Label-free training cannot proceed: the message names the step and what is missing."""


@dataclass(frozen=True)
class LabelFreeConfig:
    """How candidates are made and verified (validated on creation)."""

    top_k: int = 10
    substitute_is_relevant: bool = False
    min_gain: float = 1.0  # relevant products a candidate must add over the query itself
    lm_samples: int = 4
    lm_beams: int = 2
    vocabulary_alternatives: int = 3
    judge_threshold: float = 0.5  # relevance score above which an unjudged retrieved product counts
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "top_k": self.top_k >= 1,
            "min_gain": self.min_gain > 0,
            "lm_samples": self.lm_samples >= 0,
            "lm_beams": self.lm_beams >= 0,
            "vocabulary_alternatives": self.vocabulary_alternatives >= 1,
            "judge_threshold": 0 <= self.judge_threshold <= 1,
            "validation_fraction": 0 < self.validation_fraction < 0.5,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"LabelFreeConfig: invalid {bad} ({ {name: getattr(self, name) for name in bad} })")


@dataclass
class KeptPairs:
    """What one round of candidate verification kept, and why the rest was dropped."""

    pairs: pd.DataFrame  # query_id, query, rewrite, source, relevant_raw, relevant_rewrite
    stats: dict[str, Any] = field(default_factory=dict)

    def training_pairs(self) -> list[tuple[str, str]]:
        """(query, rewrite) pairs plus identity pairs of the rewrites (so clean queries stay as they are)."""
        pairs = list(zip(self.pairs[QUERY], self.pairs["rewrite"]))
        return pairs + [(r, r) for r in sorted(set(self.pairs["rewrite"]))]


# -- data ---------------------------------------------------------------------------------------------


def _query_bucket(query_id: str, seed: int) -> float:
    return (zlib.crc32(f"{seed}:{query_id}".encode()) % 10_000) / 10_000


def with_validation_split(examples: pd.DataFrame, fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Examples with a ``validation`` split carved out of ``train`` by query (all of a query's rows move
    together); examples without a ``split`` column are split train/validation/test by query first."""
    for column in (QUERY_ID, QUERY, PRODUCT_ID, ESCI_LABEL):
        if column not in examples.columns:
            raise LabelFreeError(
                f"label-free data: the examples lack column {column!r} (have {sorted(examples.columns)})"
            )
    examples = examples.copy()
    bucket = examples[QUERY_ID].astype(str).map(lambda q: _query_bucket(q, seed))
    if SPLIT not in examples.columns:
        examples[SPLIT] = "train"
        examples.loc[bucket >= 1 - fraction, SPLIT] = "test"
    if not (examples[SPLIT] == "validation").any():
        examples.loc[(examples[SPLIT] == "train") & (bucket < fraction), SPLIT] = "validation"
    return examples


def load_label_free_data(data: EsciData | Path | str, config: LabelFreeConfig) -> EsciData:
    """ESCI data for label-free training: ``canonical_query``/``noise`` are ignored (dropped) and a
    validation split is made by query when there is none."""
    if isinstance(data, EsciData):
        examples, products = data.examples, data.products
    else:
        directory = Path(data)
        for name in (EXAMPLES_FILE, PRODUCTS_FILE):
            if not (directory / name).is_file():
                raise LabelFreeError(f"label-free data: {directory / name} does not exist")
        examples = pd.read_parquet(directory / EXAMPLES_FILE)
        products = pd.read_parquet(directory / PRODUCTS_FILE)
    examples = examples.drop(columns=[c for c in (CANONICAL_QUERY, NOISE) if c in examples.columns])
    examples = with_validation_split(examples, config.validation_fraction, config.seed)
    return load_teacher_data(EsciData(examples=examples, products=products))


# -- candidates -------------------------------------------------------------------------------------


class VocabularyProposer:
    """Rule-based candidates: spelling normalisation of unknown words against the catalog vocabulary."""

    def __init__(self, texts: Sequence[str], alternatives: int = 3) -> None:
        counts = Counter(w for text in texts for w in words(text) if w.isalpha())
        self.frequency = counts
        self.vocabulary = sorted(counts)
        self.alternatives = alternatives

    @cache  # noqa: B019 - one proposer per run, its vocabulary never changes
    def word_options(self, word: str) -> tuple[str, ...]:
        """Known words an unknown ``word`` may stand for, most likely first."""
        if word in self.frequency or word in FILLER_WORDS or not word.isalpha():
            return ()
        limit = 1 if len(word) < 7 else 2
        close = process.extract(word, self.vocabulary, scorer=OSA.distance, score_cutoff=limit, limit=20)
        options = sorted(close, key=lambda hit: (hit[1], -self.frequency[hit[0]]))
        found = [w for w, _, _ in options]
        expansions = [w for w in self.vocabulary if is_abbreviation(word, w)] if _looks_abbreviated(word) else []
        found += sorted(expansions, key=lambda w: -self.frequency[w])[: self.alternatives]
        for cut in range(2, len(word) - 1):
            left, right = word[:cut], word[cut:]
            if left in self.frequency and right in self.frequency:
                found.append(f"{left} {right}")
        return tuple(dict.fromkeys(found))[: self.alternatives]

    def propose(self, query: str) -> list[str]:
        tokens = words(query)
        if not tokens:
            return []
        best: list[str] = []
        variants: list[list[str]] = []
        for i, token in enumerate(tokens):
            options = self.word_options(token)
            best.append(options[0] if options else token)
            variants += [tokens[:i] + [option] + tokens[i + 1 :] for option in options[1:]]
        joined = [
            tokens[:i] + [a + b] + tokens[i + 2 :]
            for i, (a, b) in enumerate(zip(tokens, tokens[1:]))
            if (a + b) in self.frequency and a.isalpha() and b.isalpha()
        ]
        no_filler = [w for w, keep in zip(best, content_mask(best)) if keep]
        candidates = [best, no_filler, *variants, *joined]
        return list(dict.fromkeys(" ".join(c) for c in candidates if c))


def _looks_abbreviated(word: str) -> bool:
    """``blk``, ``nvy``, ``lg``: two to four letters with no vowel after the first letter."""
    return 2 <= len(word) <= 4 and not set(word[1:]) & set("aeiou")


def keeps_catalog_words(query: str, rewrite: str, vocabulary: set[str]) -> bool:
    """The intent check for unverified data: every query word the catalog knows, every negation and
    every number is still in the rewrite (unknown words may change: retrieval verifies the change)."""
    kept = set(words(rewrite))
    kept |= {a + b for a, b in zip(words(rewrite), words(rewrite)[1:])}
    tokens = words(query)
    for word, content in zip(tokens, content_mask(tokens)):
        must_keep = is_protected(word) or (word in vocabulary and content)
        if must_keep and word not in kept:
            return False
    return not any(is_protected(w) and w not in set(words(query)) for w in words(rewrite))


# -- verification -----------------------------------------------------------------------------------


class RetrievalJudge:
    """Relevant products in the top k for a text searched as a given query: judged labels first, then
    the relevance model (if any) for retrieved products nobody judged."""

    def __init__(self, index, examples: pd.DataFrame, texts: dict[str, str], config: LabelFreeConfig, scorer=None):
        self.index, self.config, self.scorer, self.texts = index, config, scorer, texts
        relevant = {"E", "S"} if config.substitute_is_relevant else {"E"}
        self.judged: dict[str, dict[str, bool]] = {}
        for query_id, product_id, label in zip(
            examples[QUERY_ID].astype(str), examples[PRODUCT_ID].astype(str), examples[ESCI_LABEL].astype(str)
        ):
            self.judged.setdefault(query_id, {})[product_id] = label in relevant

    def relevant(self, items: Sequence[tuple[str, str, str]]) -> list[float]:
        """For (query_id, query, text) items: relevant products among the top k that ``text`` retrieves."""
        hits = self.index.search([text for _, _, text in items], self.config.top_k) if items else []
        unjudged = [
            (row, query, pid)
            for row, ((query_id, query, _), found) in enumerate(zip(items, hits))
            for pid in found
            if pid not in self.judged.get(query_id, {})
        ]
        model_says: dict[tuple[int, str], bool] = {}
        if self.scorer is not None and unjudged:
            scores = self.scorer.score([q for _, q, _ in unjudged], [self.texts.get(p, "") for _, _, p in unjudged])
            model_says = {
                (row, pid): float(s) >= self.config.judge_threshold for (row, _, pid), s in zip(unjudged, scores)
            }
        counts = []
        for row, ((query_id, _, _), found) in enumerate(zip(items, hits)):
            judged = self.judged.get(query_id, {})
            counts.append(float(sum(judged[p] if p in judged else model_says.get((row, p), False) for p in found)))
        return counts


def verify_candidates(
    queries: pd.DataFrame,
    candidates: dict[str, list[tuple[str, str]]],
    judge: RetrievalJudge,
    vocabulary: set[str],
    config: LabelFreeConfig,
    show_progress: bool = True,
) -> KeptPairs:
    """Keep, per query, the candidate with the most relevant products if it beats the query by
    ``min_gain`` and passes the intent check (ties: fewer filler words, the shorter edit, the LM's)."""
    rows, stats = [], Counter()
    batch = 256
    records = list(zip(queries[QUERY_ID].astype(str), queries[QUERY].astype(str)))
    for start in tqdm(range(0, len(records), batch), desc="verify candidates", disable=not show_progress):
        chunk = records[start : start + batch]
        items, owners = [], []
        for query_id, query in chunk:
            items.append((query_id, query, query))
            owners.append((query_id, query, query, "raw"))
            for text, source in candidates.get(query_id, []):
                text = clean_text(text)
                if not text or text.lower() == clean_text(query).lower():
                    continue
                if not keeps_catalog_words(query, text, vocabulary):
                    stats["rejected_intent"] += 1
                    continue
                items.append((query_id, query, text))
                owners.append((query_id, query, text, source))
        scores = judge.relevant(items)
        by_query: dict[str, dict[str, Any]] = {}
        for (query_id, query, text, source), score in zip(owners, scores):
            entry = by_query.setdefault(query_id, {"query": query, "raw": None, "options": []})
            if source == "raw":
                entry["raw"] = score
            else:
                fillers = sum(w in FILLER_WORDS for w in words(text))
                entry["options"].append(
                    (score, -fillers, -OSA.distance(query, text), source == LM_SOURCE, text, source)
                )
        for query_id, entry in by_query.items():
            stats["queries"] += 1
            if not entry["options"]:
                stats["no_candidate"] += 1
                continue
            score, _, _, _, text, source = max(entry["options"])
            if score - entry["raw"] < config.min_gain:
                stats["no_gain"] += 1
                continue
            stats[f"kept_{source}"] += 1
            rows.append(
                {
                    QUERY_ID: query_id,
                    QUERY: entry["query"],
                    "rewrite": text,
                    "source": source,
                    "relevant_raw": entry["raw"],
                    "relevant_rewrite": score,
                }
            )
    pairs = pd.DataFrame(rows, columns=[QUERY_ID, QUERY, "rewrite", "source", "relevant_raw", "relevant_rewrite"])
    stats["kept"] = len(pairs)
    return KeptPairs(pairs=pairs, stats=dict(stats))


def feedback_candidates(
    texts: Sequence[str], proposer: VocabularyProposer, search: Callable, texts_by_id: dict[str, str], depth: int = 5
) -> list[list[str]]:
    """Pseudo-relevance feedback for a word the catalog does not know and spelling cannot fix (a
    colloquial synonym): search the rest of the query, and try each frequent title word of the top
    ``depth`` products in its place (retrieval then verifies the swap)."""
    out: list[list[str]] = [[] for _ in texts]
    jobs = []
    for row, text in enumerate(texts):
        tokens = words(text)
        unknown = [
            i
            for i, w in enumerate(tokens)
            if w.isalpha() and w not in proposer.frequency and w not in FILLER_WORDS and not proposer.word_options(w)
        ]
        if len(unknown) == 1 and len(tokens) > 1:
            jobs.append((row, tokens, unknown[0]))
    hits = search([" ".join(t[:i] + t[i + 1 :]) for _, t, i in jobs], depth) if jobs else []
    for (row, tokens, i), found in zip(jobs, hits):
        counts = Counter(
            w
            for pid in found
            for w in dict.fromkeys(words(texts_by_id.get(pid, "")))  # title order breaks count ties
            if w.isalpha() and w not in tokens and w not in FILLER_WORDS and len(w) > 2
        )
        out[row] = [" ".join(tokens[:i] + [w] + tokens[i + 1 :]) for w, _ in counts.most_common(3)]
    return out


def candidate_rewrites(
    queries: pd.DataFrame,
    proposer: VocabularyProposer,
    config: LabelFreeConfig,
    lm: Callable[[list[str]], list[list[str]]] | None = None,
    feedback: Callable[[list[str]], list[list[str]]] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """query id -> [(candidate, source)]: vocabulary proposals (and pseudo-relevance feedback, when
    given), plus the LM's when one is given."""
    ids, texts = queries[QUERY_ID].astype(str).tolist(), queries[QUERY].astype(str).tolist()
    candidates = {q: [(c, VOCABULARY_SOURCE) for c in proposer.propose(t)] for q, t in zip(ids, texts)}
    if feedback is not None:
        for query_id, options in zip(ids, feedback(texts)):
            candidates[query_id] += [(c, VOCABULARY_SOURCE) for c in options]
    if lm is not None:
        for query_id, options in zip(ids, lm(texts)):
            candidates[query_id] += [(c, LM_SOURCE) for c in options]
    return candidates


def lm_candidates(rewriter, config: LabelFreeConfig) -> Callable[[list[str]], list[list[str]]]:
    """Beam-search and sampled rewrites from a :class:`~minielm.models.rewriter.CausalRewriter`."""

    def generate(texts: list[str]) -> list[list[str]]:
        out = [[] for _ in texts]
        if config.lm_beams:
            for row, options in enumerate(rewriter.rewrite(texts, num_return=config.lm_beams)):
                out[row] += options
        if config.lm_samples:
            for row, options in enumerate(rewriter.rewrite(texts, num_return=config.lm_samples, do_sample=True)):
                out[row] += options
        return [list(dict.fromkeys(options)) for options in out]

    return generate


# -- the run ----------------------------------------------------------------------------------------


def mine_rewrite_pairs(
    data: EsciData,
    index,
    config: LabelFreeConfig,
    rewriter=None,
    scorer=None,
    split: str = "train",
    show_progress: bool = True,
) -> KeptPairs:
    """One round: candidates for every query of ``split``, verified by retrieval and the intent check."""
    texts = product_texts(data)
    examples = data.examples[data.examples[SPLIT] == split]
    if examples.empty:
        raise LabelFreeError(f"label-free mining: the {split!r} split is empty")
    queries = examples.drop_duplicates(QUERY_ID)[[QUERY_ID, QUERY]]
    proposer = VocabularyProposer(list(texts.values()), config.vocabulary_alternatives)
    lm = lm_candidates(rewriter, config) if rewriter is not None else None
    titles = dict(zip(data.products[PRODUCT_ID].astype(str), data.products[PRODUCT_TITLE].astype(str)))

    def feedback(batch: list[str]) -> list[list[str]]:
        return feedback_candidates(batch, proposer, index.search, titles)

    candidates = candidate_rewrites(queries, proposer, config, lm, feedback)
    judge = RetrievalJudge(index, examples, texts, config, scorer)
    kept = verify_candidates(queries, candidates, judge, set(proposer.frequency), config, show_progress)
    log.info("label-free pairs mined", split=split, **kept.stats)
    if kept.pairs.empty:
        raise LabelFreeError(
            f"label-free mining: no candidate rewrite retrieved at least {config.min_gain:g} more relevant "
            f"product(s) in the top {config.top_k} than the query itself, for any of the {len(queries)} "
            f"{split!r} queries ({kept.stats}); there is nothing to train the rewriter on. Check that the "
            "judgments mark relevant products (esci_label E) and that the search index covers the catalog."
        )
    return kept


def labelled_dataset(data: EsciData, kept: KeptPairs) -> EsciData:
    """``data`` with ``canonical_query`` = the kept rewrite, for
    :func:`~minielm.teachers.rewriter.train_rewriter_teacher`. Train queries without a verified rewrite
    are left out: nothing says whether they are clean or just beyond the candidates."""
    rewrites = dict(zip(kept.pairs[QUERY_ID].astype(str), kept.pairs["rewrite"]))
    examples = data.examples
    unverified = (examples[SPLIT] == "train") & ~examples[QUERY_ID].astype(str).isin(rewrites)
    examples = examples[~unverified].copy()
    examples[CANONICAL_QUERY] = examples[QUERY_ID].astype(str).map(rewrites)
    return EsciData(examples=examples.reset_index(drop=True), products=data.products)


def train_label_free_rewriter(
    data: EsciData | Path | str,
    output_dir: Path | str,
    config,
    label_free: LabelFreeConfig | None = None,
    rounds: int = 2,
    scorer=None,
    index_dir: Path | str | None = None,
    cache_dir: Path | str = ".cache/models",
    round_steps: Sequence[int] | None = None,
):
    """Mine verified pairs, train the teacher on them, and repeat with the teacher's own candidates.

    Round 0 verifies vocabulary candidates only (an untrained LM proposes nothing useful); every later
    round adds the previous round's teacher's beams and samples and trains that teacher further.
    Earlier rounds live in ``output_dir/round-<n>``; the last one trains into ``output_dir`` itself, so
    the teacher is ``output_dir/final`` as for supervised training. A finished round is not redone.
    Returns the last round's :class:`~minielm.teachers.common.TeacherRun`, with every round's kept-pair
    statistics in ``metrics["label_free_rounds"]``.
    """
    from minielm.models.rewriter import CausalRewriter
    from minielm.search import SearchIndex
    from minielm.teachers.common import METRICS_FILE, TeacherRun
    from minielm.teachers.rewriter import train_rewriter_teacher

    if rounds < 1:
        raise ValueError(f"label-free training: rounds must be >= 1, got {rounds}")
    label_free = label_free or LabelFreeConfig()
    output_dir = Path(output_dir)
    dataset = load_label_free_data(data, label_free)
    index = SearchIndex.load(index_dir) if index_dir else SearchIndex.build(dataset.products)
    history: list[dict[str, Any]] = []
    previous: Path | None = None
    run = None
    for round_number in range(rounds):
        round_dir = output_dir if round_number == rounds - 1 else output_dir / f"round-{round_number}"
        pairs_file = round_dir / KEPT_PAIRS_FILE
        finished = (round_dir / "final" / "metadata.json").is_file() and pairs_file.is_file()
        if finished:
            log.info("label-free round already trained", round=round_number, model_dir=str(round_dir / "final"))
            stats = json.loads((round_dir / KEPT_STATS_FILE).read_text())
            metrics = json.loads((round_dir / METRICS_FILE).read_text())
            run = TeacherRun(name="teacher-rewriter", model_dir=round_dir / "final", metrics=metrics, train={})
        else:
            rewriter = CausalRewriter.load(previous, max_new_tokens=config.max_answer_tokens + 1) if previous else None
            kept = mine_rewrite_pairs(dataset, index, label_free, rewriter=rewriter, scorer=scorer)
            stats = kept.stats
            round_dir.mkdir(parents=True, exist_ok=True)
            kept.pairs.to_parquet(pairs_file, index=False)
            (round_dir / KEPT_STATS_FILE).write_text(json.dumps(stats, indent=2))
            run = train_rewriter_teacher(
                labelled_dataset(dataset, kept),
                round_dir,
                _round_config(config, round_steps, round_number),
                cache_dir=cache_dir,
                index_dir=index_dir,
                top_k=label_free.top_k,
                substitute_is_relevant=label_free.substitute_is_relevant,
                init_from=previous,
            )
        history.append({"round": round_number, "kept": stats, "model_dir": str(run.model_dir)})
        previous = run.model_dir
    run.metrics["label_free_rounds"] = history
    run.metadata["label_free_rounds"] = history
    return run


def _round_config(config, round_steps: Sequence[int] | None, round_number: int):
    if round_steps is None:
        return config
    steps = round_steps[min(round_number, len(round_steps) - 1)]
    training = config.training.model_copy(
        update={"max_steps": steps, "warmup_steps": min(config.training.warmup_steps, steps)}
    )
    return config.model_copy(update={"training": training})
