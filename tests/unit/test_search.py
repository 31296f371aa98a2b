"""BM25 search over product text: ranking, no-match behaviour, save/load, input errors."""

from __future__ import annotations

import pandas as pd
import pytest

from minielm.data.text import product_text
from minielm.search import SearchIndex


@pytest.fixture()
def products():
    return pd.DataFrame(
        {
            "product_id": ["kettle", "cooker", "table", "lamp"],
            "product_title": [
                "Brewlux Electric Kettle 1.7 Liter",
                "Cookwell Pressure Cooker 6 Quart",
                "Oakridge Bedside Table",
                "Serenia Table Lamp",
            ],
            "product_brand": ["brewlux", "cookwell", "oakridge", "serenia"],
            "product_color": ["black", "silver", "brown", "white"],
        }
    )


def test_product_text_for_row_and_frame(products):
    assert product_text(products.iloc[0]) == "Brewlux Electric Kettle 1.7 Liter | brewlux | black"
    assert product_text({"product_title": "T", "product_color": None, "size": "6 quart"}) == "T | 6 quart"
    texts = product_text(products)
    assert texts.tolist()[1] == "Cookwell Pressure Cooker 6 Quart | cookwell | silver"
    with pytest.raises(KeyError, match="product_title"):
        product_text({"title": "x"})


def test_search_ranks_by_bm25_and_skips_non_matches(products):
    index = SearchIndex.build(products)
    assert index.search(["pressure cookers"], k=3) == [["cooker"]]
    results = index.search(["bedside table", "zzz qqq", "", "black kettle 6"], k=10)
    assert results[0][0] == "table" and set(results[0]) == {"table", "lamp"}
    assert results[1] == [] and results[2] == []
    assert results[3][0] == "kettle" and "cooker" in results[3]
    scored = index.search_with_scores(["table"], k=2)[0]
    assert [pid for pid, _ in scored] and all(score > 0 for _, score in scored)
    assert scored[0][1] >= scored[-1][1]


def test_save_and_load_give_the_same_results(products, tmp_path):
    index = SearchIndex.build(products)
    queries = ["table lamp white", "kettle", "cookwell"]
    loaded = SearchIndex.load(index.save(tmp_path / "index"))
    assert loaded.search(queries, k=4) == index.search(queries, k=4)
    assert len(loaded) == 4


def test_bad_input(products, tmp_path):
    index = SearchIndex.build(products)
    with pytest.raises(ValueError, match="k must be"):
        index.search(["x"], k=0)
    with pytest.raises(TypeError, match="list of query strings"):
        index.search("kettle", k=1)
    with pytest.raises(FileNotFoundError, match="not a saved SearchIndex"):
        SearchIndex.load(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        SearchIndex.build(products.iloc[:0])
    assert index.search([], k=3) == []


def test_ties_are_broken_by_catalog_order():
    products = pd.DataFrame({"product_id": [f"p{i}" for i in range(30)], "product_title": ["Black Kettle"] * 30})
    index = SearchIndex.build(products)
    assert index.search(["black kettle"], k=5) == [["p0", "p1", "p2", "p3", "p4"]]
    assert len(index.search(["kettle"], k=100)[0]) == 30
