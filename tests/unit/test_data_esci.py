"""The ESCI loader on files written in the published schema, and the shared sample readers."""

from __future__ import annotations

import pandas as pd
import pytest

from minielm.data import esci
from minielm.data.esci import EsciData, EsciFormatError, load_esci, write_esci


def _real_schema_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    # As published: integer query ids, ASIN product ids, three locales, train/test splits.
    examples = pd.DataFrame(
        {
            "example_id": [0, 1, 2, 3, 4, 5],
            "query": [
                "revent 80 cfm",
                "revent 80 cfm",
                "!awnmower tires without rims",
                "bath fan",
                "bath fan",
                "ventilador",
            ],
            "query_id": [0, 0, 1, 2, 2, 3],
            "product_id": ["B000MOO21W", "B07X3Y6B1V", "B08L3B9B9P", "B000MOO21W", "B01N5F4P4E", "B07X3Y6B1V"],
            "product_locale": ["us", "us", "us", "us", "us", "es"],
            "esci_label": ["I", "E", "S", "E", "C", "E"],
            "small_version": [0, 0, 1, 1, 1, 0],
            "large_version": [1, 1, 1, 1, 1, 1],
            "split": ["train", "train", "test", "train", "train", "test"],
        }
    )
    products = pd.DataFrame(
        {
            "product_id": ["B000MOO21W", "B07X3Y6B1V", "B08L3B9B9P", "B01N5F4P4E", "B07X3Y6B1V"],
            "product_locale": ["us", "us", "us", "us", "es"],
            "product_title": [
                "Panasonic FV-08VQ5 WhisperCeiling 80 CFM",
                "Delta BreezSignature VFB25ACH",
                "MaxAuto tires",
                "Bath fan cover",
                "Ventilador de baño",
            ],
            "product_description": [None, "quiet fan", None, None, None],
            "product_bullet_point": ["WhisperCeiling", None, None, None, None],
            "product_brand": ["Panasonic", "DELTA ELECTRONICS", "MaxAuto", None, "Delta"],
            "product_color": ["White", None, None, None, None],
        }
    )
    return examples, products


@pytest.fixture()
def esci_dir(tmp_path):
    examples, products = _real_schema_frames()
    examples.to_parquet(tmp_path / esci.EXAMPLES_FILE, index=False)
    products.to_parquet(tmp_path / esci.PRODUCTS_FILE, index=False)
    return tmp_path


def test_load_filters_locale_and_split_and_types_ids_as_strings(esci_dir):
    data = load_esci(esci_dir, locale="us")
    assert len(data.examples) == 5 and len(data.products) == 4
    assert data.examples["query_id"].tolist() == ["0", "0", "1", "2", "2"]
    assert data.products["product_description"].tolist()[0] == ""
    train = load_esci(esci_dir, locale="us", split="train")
    assert set(train.examples["split"]) == {"train"} and len(train.examples) == 4
    small = load_esci(esci_dir, small_version_only=True)
    assert small.examples["example_id"].tolist() == [2, 3, 4]
    spanish = load_esci(esci_dir, locale="es")
    assert spanish.examples["query"].tolist() == ["ventilador"]
    assert spanish.products["product_title"].tolist() == ["Ventilador de baño"]


def test_write_then_load_round_trip_keeps_extra_columns(esci_dir, tmp_path):
    data = load_esci(esci_dir)
    data.examples["canonical_query"] = data.examples["query"].str.upper()
    out = write_esci(data, tmp_path / "copy")
    again = load_esci(out)
    pd.testing.assert_frame_equal(again.examples, data.examples)
    pd.testing.assert_frame_equal(again.products, data.products)


def test_missing_columns_are_named(esci_dir):
    examples, _ = _real_schema_frames()
    examples.drop(columns=["esci_label", "split"]).to_parquet(esci_dir / esci.EXAMPLES_FILE, index=False)
    with pytest.raises(EsciFormatError, match=r"missing column\(s\) \['esci_label', 'split'\]"):
        load_esci(esci_dir)


def test_bad_values_are_named(esci_dir):
    examples, products = _real_schema_frames()
    examples.loc[1, "esci_label"] = "X"
    examples.to_parquet(esci_dir / esci.EXAMPLES_FILE, index=False)
    with pytest.raises(EsciFormatError, match="esci_label.*'X'"):
        load_esci(esci_dir)
    products_dup = pd.concat([products, products.iloc[:1]])
    with pytest.raises(EsciFormatError, match="duplicate"):
        esci.validate_products(products_dup)


def test_bad_arguments_and_missing_files(tmp_path, esci_dir):
    with pytest.raises(EsciFormatError, match="not found"):
        load_esci(tmp_path / "nowhere")
    with pytest.raises(EsciFormatError, match="locale"):
        load_esci(esci_dir, locale="fr")
    with pytest.raises(EsciFormatError, match="split"):
        load_esci(esci_dir, split="dev")


def test_split_and_queries_helpers(esci_dir):
    data = load_esci(esci_dir)
    assert data.queries()["query_id"].tolist() == ["0", "1", "2"]
    assert set(data.split("test").examples["query_id"]) == {"1"}
    assert isinstance(data.split("train"), EsciData)


def test_shared_sample_readers(shared_dir):
    sample = esci.load_esci_sample(shared_dir / "data" / "esci-sample")
    assert len(sample.judgments) == 6678
    assert sample.judgments["query"].nunique() == 150
    assert sample.judgments["esci_label"].value_counts().to_dict() == {"E": 3389, "S": 1898, "I": 1086, "C": 305}
    assert len(sample.queryset) == 150 and sample.queryset[0] == "t towels kitchen"
    assert len(sample.ubi_queries) + len(sample.ubi_events) == 3921
    assert {"query_id", "user_query"} <= set(sample.ubi_queries.columns)
    assert {"action_name", "object_id", "position"} <= set(sample.ubi_events.columns)
    examples = esci.judgments_to_examples(sample.judgments)
    assert examples["query_id"].nunique() == 150 and list(examples.columns[:9]) == list(esci.EXAMPLE_COLUMNS)


def test_bad_judgment_file_is_reported(tmp_path):
    path = tmp_path / "j.json"
    path.write_text('{"judgmentRatings": [{"query": "q", "ratings": [{"docId": "A", "rating": "55"}]}]}')
    with pytest.raises(EsciFormatError, match="rating 55.0"):
        esci.read_judgments(path)
    path.write_text('{"other": []}')
    with pytest.raises(EsciFormatError, match="judgmentRatings"):
        esci.read_judgments(path)
    events = tmp_path / "e.ndjson"
    events.write_text('{"index": {"_index": "ubi_queries"}}\nnot json\n')
    with pytest.raises(EsciFormatError, match=":2: not JSON"):
        esci.read_ubi_events(events)
