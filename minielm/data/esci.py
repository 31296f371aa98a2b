"""The Amazon ESCI shopping-queries format: constants, validation, loading and writing.

Every stage reads and writes this one layout (``shopping_queries_dataset_examples.parquet`` and
``shopping_queries_dataset_products.parquet``), whether the data is the published dataset or the
synthetic catalog. Identifiers are normalised to strings on load so that ``query_id`` and
``product_id`` join the same way everywhere.

Also reads the judgment, query-set and user-behaviour (UBI) files shipped in
``../shared/data/esci-sample/`` (OpenSearch Search-Relevance-Workbench JSON and NDJSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from minielm.errors import InputError
from minielm.logs import get_logger

log = get_logger(__name__)

EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"

ESCI_LABELS = ("E", "S", "C", "I")
# Gains of the ESCI paper (Reddy et al. 2022) for nDCG: Exact 1, Substitute 0.1, Complement 0.01.
ESCI_GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
LOCALES = ("us", "es", "jp")
SPLITS = ("train", "validation", "test")

EXAMPLE_ID = "example_id"
QUERY = "query"
QUERY_ID = "query_id"
PRODUCT_ID = "product_id"
PRODUCT_LOCALE = "product_locale"
ESCI_LABEL = "esci_label"
SMALL_VERSION = "small_version"
LARGE_VERSION = "large_version"
SPLIT = "split"
PRODUCT_TITLE = "product_title"
PRODUCT_DESCRIPTION = "product_description"
PRODUCT_BULLET_POINT = "product_bullet_point"
PRODUCT_BRAND = "product_brand"
PRODUCT_COLOR = "product_color"

EXAMPLE_COLUMNS = (
    EXAMPLE_ID,
    QUERY,
    QUERY_ID,
    PRODUCT_ID,
    PRODUCT_LOCALE,
    ESCI_LABEL,
    SMALL_VERSION,
    LARGE_VERSION,
    SPLIT,
)
PRODUCT_COLUMNS = (
    PRODUCT_ID,
    PRODUCT_LOCALE,
    PRODUCT_TITLE,
    PRODUCT_DESCRIPTION,
    PRODUCT_BULLET_POINT,
    PRODUCT_BRAND,
    PRODUCT_COLOR,
)
PRODUCT_TEXT_COLUMNS = (PRODUCT_TITLE, PRODUCT_DESCRIPTION, PRODUCT_BULLET_POINT, PRODUCT_BRAND, PRODUCT_COLOR)

# Synthetic extras (kept when present, never required).
CANONICAL_QUERY = "canonical_query"
NOISE = "noise"
NOISE_NOVELTY = "noise_novelty"  # seen | unseen | none: whether the train split shows this query's noise edits

# Ratings of the shared judgment file (OpenSearch SRW import of ESCI) and their labels.
RATING_TO_LABEL = {100.0: "E", 10.0: "S", 1.0: "C", 0.0: "I"}

SAMPLE_JUDGMENTS_FILE = "esci_us_judgments.json"
SAMPLE_QUERYSET_FILE = "esci_us_queryset.json"
SAMPLE_UBI_FILE = "ubi_queries_events.ndjson"


class EsciFormatError(InputError):
    """The data does not follow the ESCI layout; the message names the file and the columns."""


@dataclass
class EsciData:
    """Query-product judgments (``examples``) and the catalog (``products``) in the ESCI layout."""

    examples: pd.DataFrame
    products: pd.DataFrame

    def queries(self) -> pd.DataFrame:
        """One row per query id with its text (and canonical rewrite and split when present)."""
        columns = [
            c for c in (QUERY_ID, QUERY, CANONICAL_QUERY, NOISE, NOISE_NOVELTY, SPLIT) if c in self.examples.columns
        ]
        return self.examples[columns].drop_duplicates(QUERY_ID).reset_index(drop=True)

    def split(self, name: str) -> EsciData:
        """The examples of one split, with the whole catalog."""
        if name not in SPLITS:
            raise EsciFormatError(f"split: expected one of {SPLITS}, got {name!r}")
        examples = self.examples[self.examples[SPLIT] == name].reset_index(drop=True)
        return EsciData(examples=examples, products=self.products)


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise EsciFormatError(f"{what}: missing column(s) {missing}; expected the ESCI columns {list(required)}")


def validate_examples(frame: pd.DataFrame, what: str = "examples") -> pd.DataFrame:
    """Check columns and values of an examples frame; return it with normalised dtypes."""
    _require_columns(frame, EXAMPLE_COLUMNS, what)
    frame = frame.copy()
    for column in (QUERY, QUERY_ID, PRODUCT_ID, PRODUCT_LOCALE, ESCI_LABEL, SPLIT):
        if frame[column].isna().any():
            rows = frame.index[frame[column].isna()][:5].tolist()
            raise EsciFormatError(f"{what}: column {column!r} has missing values (rows {rows})")
    bad_labels = sorted(set(frame[ESCI_LABEL].astype(str)) - set(ESCI_LABELS))
    if bad_labels:
        raise EsciFormatError(
            f"{what}: column {ESCI_LABEL!r} has values {bad_labels[:5]}; expected one of {ESCI_LABELS}"
        )
    bad_splits = sorted(set(frame[SPLIT].astype(str)) - set(SPLITS))
    if bad_splits:
        raise EsciFormatError(f"{what}: column {SPLIT!r} has values {bad_splits[:5]}; expected one of {SPLITS}")
    for column in (SMALL_VERSION, LARGE_VERSION):
        try:
            frame[column] = frame[column].astype("int64")
        except (TypeError, ValueError) as error:
            raise EsciFormatError(f"{what}: column {column!r} must hold 0/1 integers ({error})") from None
    for column in (QUERY, QUERY_ID, PRODUCT_ID, PRODUCT_LOCALE, ESCI_LABEL, SPLIT):
        frame[column] = frame[column].astype(str)
    frame[EXAMPLE_ID] = frame[EXAMPLE_ID].astype("int64")
    return frame


def validate_products(frame: pd.DataFrame, what: str = "products") -> pd.DataFrame:
    """Check columns of a products frame; return it with ids as strings and empty text as ''."""
    _require_columns(frame, PRODUCT_COLUMNS, what)
    frame = frame.copy()
    if frame[PRODUCT_ID].isna().any():
        raise EsciFormatError(f"{what}: column {PRODUCT_ID!r} has missing values")
    frame[PRODUCT_ID] = frame[PRODUCT_ID].astype(str)
    frame[PRODUCT_LOCALE] = frame[PRODUCT_LOCALE].astype(str)
    for column in PRODUCT_TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    duplicated = frame.duplicated([PRODUCT_ID, PRODUCT_LOCALE])
    if duplicated.any():
        ids = frame.loc[duplicated, PRODUCT_ID].head(5).tolist()
        raise EsciFormatError(f"{what}: duplicate ({PRODUCT_ID}, {PRODUCT_LOCALE}) rows, e.g. {ids}")
    return frame


def load_esci(
    data_dir: Path | str, locale: str = "us", split: str | None = None, small_version_only: bool = False
) -> EsciData:
    """Read the two ESCI parquet files from ``data_dir``, filtered by locale and (optionally) split.

    Extra columns (such as the synthetic ``canonical_query``) are kept.
    """
    data_dir = Path(data_dir)
    if locale not in LOCALES:
        raise EsciFormatError(f"locale: expected one of {LOCALES}, got {locale!r}")
    if split is not None and split not in SPLITS:
        raise EsciFormatError(f"split: expected one of {SPLITS} or None, got {split!r}")
    paths = {name: data_dir / name for name in (EXAMPLES_FILE, PRODUCTS_FILE)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise EsciFormatError(f"ESCI file(s) not found: {missing}")
    examples = validate_examples(pd.read_parquet(paths[EXAMPLES_FILE]), what=str(paths[EXAMPLES_FILE]))
    products = validate_products(pd.read_parquet(paths[PRODUCTS_FILE]), what=str(paths[PRODUCTS_FILE]))
    keep = examples[PRODUCT_LOCALE] == locale
    if split is not None:
        keep &= examples[SPLIT] == split
    if small_version_only:
        keep &= examples[SMALL_VERSION] == 1
    examples = examples[keep].reset_index(drop=True)
    products = products[products[PRODUCT_LOCALE] == locale].reset_index(drop=True)
    log.info(
        "esci loaded",
        data_dir=str(data_dir),
        locale=locale,
        split=split,
        examples=len(examples),
        queries=examples[QUERY_ID].nunique(),
        products=len(products),
    )
    return EsciData(examples=examples, products=products)


def write_esci(data: EsciData, out_dir: Path | str) -> Path:
    """Write both frames (validated) as the ESCI parquet files in ``out_dir``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    validate_examples(data.examples).to_parquet(out_dir / EXAMPLES_FILE, index=False)
    validate_products(data.products).to_parquet(out_dir / PRODUCTS_FILE, index=False)
    log.info("esci written", out_dir=str(out_dir), examples=len(data.examples), products=len(data.products))
    return out_dir


def _read_json(path: Path, key: str) -> list:
    if not path.is_file():
        raise EsciFormatError(f"file not found: {path}")
    document = json.loads(path.read_text())
    if not isinstance(document, dict) or key not in document:
        raise EsciFormatError(f"{path}: expected a JSON object with a {key!r} list")
    return document[key]


def read_judgments(path: Path | str) -> pd.DataFrame:
    """Graded judgments (SRW import JSON) as rows of query, product_id, rating, esci_label."""
    path = Path(path)
    rows = []
    for entry in _read_json(path, "judgmentRatings"):
        if "query" not in entry or "ratings" not in entry:
            raise EsciFormatError(f"{path}: each judgmentRatings entry needs 'query' and 'ratings'")
        for rating in entry["ratings"]:
            value = float(rating["rating"])
            if value not in RATING_TO_LABEL:
                raise EsciFormatError(
                    f"{path}: rating {value} for {rating.get('docId')!r} is not one of {sorted(RATING_TO_LABEL)}"
                )
            rows.append((entry["query"], str(rating["docId"]), value, RATING_TO_LABEL[value]))
    return pd.DataFrame(rows, columns=[QUERY, PRODUCT_ID, "rating", ESCI_LABEL])


def read_queryset(path: Path | str) -> list[str]:
    """The query texts of an SRW query-set JSON."""
    path = Path(path)
    return [str(item["queryText"]) for item in _read_json(path, "querySetQueries")]


def read_ubi_events(path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User Behavior Insights bulk NDJSON -> (queries, events) frames.

    The file alternates ``{"index": {"_index": ...}}`` action lines and documents; the index
    name says whether a document is a query (``ubi_queries``) or an event (``ubi_events``).
    Events get flat ``object_id`` and ``position`` columns from ``event_attributes``.
    """
    path = Path(path)
    if not path.is_file():
        raise EsciFormatError(f"file not found: {path}")
    queries, events = [], []
    index_name = None
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except json.JSONDecodeError as error:
                raise EsciFormatError(f"{path}:{number}: not JSON ({error})") from None
            if "index" in document and len(document) == 1:
                index_name = document["index"].get("_index")
                continue
            if index_name == "ubi_queries":
                queries.append(document)
            elif index_name == "ubi_events":
                attributes = document.get("event_attributes") or {}
                document = {k: v for k, v in document.items() if k != "event_attributes"}
                document["object_id"] = (attributes.get("object") or {}).get("object_id")
                document["position"] = (attributes.get("position") or {}).get("ordinal")
                events.append(document)
            else:
                raise EsciFormatError(
                    f"{path}:{number}: document without a preceding ubi_queries/ubi_events "
                    f"index line (got {index_name!r})"
                )
            index_name = None
    return pd.DataFrame(queries), pd.DataFrame(events)


@dataclass
class EsciSample:
    """The shared sample: graded judgments, the query set and UBI query/event logs."""

    judgments: pd.DataFrame
    queryset: list[str]
    ubi_queries: pd.DataFrame
    ubi_events: pd.DataFrame


def load_esci_sample(sample_dir: Path | str) -> EsciSample:
    sample_dir = Path(sample_dir)
    ubi_queries, ubi_events = read_ubi_events(sample_dir / SAMPLE_UBI_FILE)
    return EsciSample(
        judgments=read_judgments(sample_dir / SAMPLE_JUDGMENTS_FILE),
        queryset=read_queryset(sample_dir / SAMPLE_QUERYSET_FILE),
        ubi_queries=ubi_queries,
        ubi_events=ubi_events,
    )


def judgments_to_examples(judgments: pd.DataFrame, locale: str = "us", split: str = "test") -> pd.DataFrame:
    """Judgment rows in the ESCI examples layout (query ids numbered by first appearance)."""
    query_ids = {q: str(i) for i, q in enumerate(dict.fromkeys(judgments[QUERY]))}
    examples = pd.DataFrame(
        {
            EXAMPLE_ID: range(len(judgments)),
            QUERY: judgments[QUERY].values,
            QUERY_ID: judgments[QUERY].map(query_ids).values,
            PRODUCT_ID: judgments[PRODUCT_ID].values,
            PRODUCT_LOCALE: locale,
            ESCI_LABEL: judgments[ESCI_LABEL].values,
            SMALL_VERSION: 1,
            LARGE_VERSION: 1,
            SPLIT: split,
        }
    )
    return validate_examples(examples)
