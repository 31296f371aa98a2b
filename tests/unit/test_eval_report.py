"""The HTML quality report: self-contained, every system, seen vs unseen, harm, examples."""

from __future__ import annotations

from minielm.data.synthetic import generate_dataset
from minielm.eval_report import render_html_report, write_html_report
from minielm.evaluation import oracle_queries, quality_report, raw_queries, real_queries_safety
from minielm.search import SearchIndex


def test_quality_report_and_its_html(tmp_path):
    data = generate_dataset(n_products=800, n_queries=500, seed=2)
    test = data.examples[data.examples["split"] != "train"]
    index = SearchIndex.build(data.products)
    raw = raw_queries(test)
    vandal = {q: "wireless headphones" for q in raw}  # rewrites everything into one product: harmful
    report = quality_report(index, test, {"raw": raw, "oracle": oracle_queries(test), "student": vandal}, k=10)
    assert set(report["by_novelty"]["oracle"]) == {"none", "seen", "unseen"}
    assert "clean" in report["by_noise"]["raw"] and "out_of_catalog" in report["by_noise"]["raw"]
    assert report["harm"]["raw"]["harm_rate"] == 0.0 == report["harm"]["oracle"]["harm_rate"]
    assert report["harm"]["student"]["harm_rate"] > 0.9
    assert report["harm_by_noise"]["oracle"]["misspelling"]["harm_rate"] == 0.0
    assert report["examples"]["student"][0]["harm"]
    report["real_queries"] = {"student": real_queries_safety(lambda qs: ["wireless headphones"] * len(qs), ["sofa"])}
    html = render_html_report(report)
    for text in (
        "raw",
        "oracle",
        "student",
        "seen vs unseen",
        "per noise class",
        "out_of_catalog",
        "lost content_word",
    ):
        assert text in html
    assert "<script" not in html and "http" not in html  # self-contained
    path = write_html_report(report, tmp_path / "nested" / "eval.html")
    assert path.read_text() == html
