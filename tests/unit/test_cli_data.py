"""`minielm data ...` and `minielm eval` end to end on a tiny synthetic catalog."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from minielm.cli import app

runner = CliRunner()


def _invoke(tmp_path, *args):
    return runner.invoke(
        app,
        [
            "--set",
            f"paths.state_dir={tmp_path}",
            "--set",
            f"paths.data_dir={tmp_path}/data",
            "--set",
            f"paths.reports_dir={tmp_path}/reports",
            *args,
        ],
    )


def test_generate_index_eval_and_load(tmp_path):
    result = _invoke(tmp_path, "data", "generate", "--products", "600", "--queries", "400", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "400 queries" in result.output
    result = _invoke(tmp_path, "data", "index")
    assert result.exit_code == 0, result.output
    rewrites = tmp_path / "rewrites.jsonl"
    result = _invoke(tmp_path, "data", "load-esci", "--data", str(tmp_path / "data" / "synthetic"), "--split", "test")
    assert result.exit_code == 0 and "(us, test)" in result.output
    dataset_dir = tmp_path / "data" / "synthetic"
    from minielm.data.esci import load_esci

    examples = load_esci(dataset_dir, split="validation").examples.drop_duplicates("query_id")
    rewrites.write_text("\n".join(json.dumps({"query_id": q, "rewrite": "zzz"}) for q in examples["query_id"]))
    result = _invoke(tmp_path, "eval", "--split", "validation", "--k", "5", "--rewrites", f"nonsense={rewrites}")
    assert result.exit_code == 0, result.output
    assert "oracle" in result.output and "nonsense" in result.output
    report = json.loads((tmp_path / "reports" / "eval.json").read_text())
    systems = report["systems"]
    assert report["k"] == 5 and report["split"] == "validation"
    assert systems["oracle"]["relevant_per_query"] > systems["raw"]["relevant_per_query"]
    assert systems["nonsense"]["zero_result_rate"] == 1.0
    assert "baseline" in systems and set(report["by_novelty"]["raw"]) <= {"none", "seen", "unseen"}
    assert report["harm"]["raw"]["harm_rate"] == 0.0
    html = (tmp_path / "reports" / "eval.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "seen vs unseen noise" in html and "nonsense" in html
    result = _invoke(tmp_path, "eval", "--split", "validation", "--k", "5", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["systems"]["raw"] == systems["raw"]


def test_bad_input_exits_2_with_the_field_named(tmp_path):
    result = _invoke(tmp_path, "data", "load-esci", "--data", str(tmp_path))
    assert result.exit_code == 2 and "ESCI file(s) not found" in result.output
    result = _invoke(tmp_path, "data", "load-esci", "--data", str(tmp_path), "--split", "dev")
    assert result.exit_code == 2 and "--split" in result.output
    result = _invoke(tmp_path, "eval", "--rewrites", "no-equals-sign")
    assert result.exit_code == 2 and "--rewrites: expected NAME=PATH" in result.output
    result = _invoke(tmp_path, "eval", "--split", "dev")
    assert result.exit_code == 2 and "--split" in result.output
    result = _invoke(tmp_path, "eval")
    assert result.exit_code == 2 and "not found" in result.output
    result = _invoke(tmp_path, "data", "generate", "--products", "0")
    assert result.exit_code == 2


def test_sample_summary(shared_dir, tmp_path):
    result = _invoke(tmp_path, "data", "sample", "--data", str(shared_dir / "data" / "esci-sample"))
    assert result.exit_code == 0, result.output
    assert "judgments: 6678 for 150 queries" in result.output
    as_json = json.loads(_invoke(tmp_path, "data", "sample", "-o", "json").stdout)  # the setting's default
    assert as_json["judgments"] == 6678 and as_json["queryset_queries"] == 150


def test_sample_without_the_esci_sample_names_the_setting(tmp_path):
    result = _invoke(tmp_path, "--set", "paths.esci_sample_dir=no/such/dir", "data", "sample")
    assert result.exit_code == 2 and "paths.esci_sample_dir" in result.output
