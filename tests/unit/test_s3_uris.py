"""s3:// URIs: parse, check, upload a folder, fetch a prefix or one object (moto S3); `minielm data upload`."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from minielm.cli import app
from minielm.config import S3Config
from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.s3_uris import S3Unreachable, S3UriError, fetch, parse_s3_uri, require_objects, upload_dir

runner = CliRunner()
AWS = S3Config(endpoint_url=None, access_key_id="test", secret_access_key="test")


@pytest.fixture()
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="datasets")
        yield "datasets"


def test_parse_names_the_bad_uri():
    assert parse_s3_uri("s3://b/some/prefix/") == ("b", "some/prefix")
    assert parse_s3_uri("s3://b") == ("b", "")
    for bad in ("/local/path", "s3://", "http://b/x"):
        with pytest.raises(S3UriError, match="s3://"):
            parse_s3_uri(bad)


def test_upload_then_fetch_a_prefix_and_one_object(bucket, tmp_path):
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "nested" / "b.txt").write_text("b")
    keys = upload_dir(source, "s3://datasets/run/1", AWS)
    assert keys == ["run/1/a.txt", "run/1/nested/b.txt"]
    assert require_objects("s3://datasets/run/1", AWS) == 2
    copy = fetch("s3://datasets/run/1/", tmp_path / "copy", AWS)
    assert (copy / "nested" / "b.txt").read_text() == "b" and (copy / "a.txt").read_text() == "a"
    single = fetch("s3://datasets/run/1/a.txt", tmp_path / "single", AWS)
    assert single == tmp_path / "single" / "a.txt" and single.read_text() == "a"
    local = fetch(str(source), tmp_path / "local", AWS)
    assert (local / "nested" / "b.txt").read_text() == "b"


def test_missing_inputs_name_the_uri(bucket, tmp_path):
    with pytest.raises(S3UriError, match="s3://datasets/nothing does not exist"):
        require_objects("s3://datasets/nothing", AWS)
    with pytest.raises(S3UriError, match="s3://datasets/nothing does not exist"):
        fetch("s3://datasets/nothing", tmp_path / "x", AWS)
    with pytest.raises(S3UriError, match="bucket 'no-such-bucket' does not exist"):
        require_objects("s3://no-such-bucket/x", AWS)
    with pytest.raises(S3UriError, match="does not exist"):
        fetch(str(tmp_path / "absent"), tmp_path / "y", AWS)


def test_unreachable_endpoint_is_an_environment_error():
    config = S3Config(endpoint_url="http://127.0.0.1:9", access_key_id="k", secret_access_key="s")
    with pytest.raises(S3Unreachable, match="cannot reach S3"):
        require_objects("s3://b/x", config)


def test_data_upload_checks_then_uploads(bucket, tmp_path):
    data_dir = write_esci(generate_dataset(n_products=60, n_queries=20, seed=1), tmp_path / "esci")
    base = ["--set", f"paths.state_dir={tmp_path}", "--set", "s3.endpoint_url=null", "data", "upload"]
    result = runner.invoke(app, [*base, str(data_dir), "s3://datasets/esci/v1"])
    assert result.exit_code == 0, result.output
    assert "uploaded 2 files to s3://datasets/esci/v1" in result.output
    assert require_objects("s3://datasets/esci/v1", AWS) == 2

    not_training = tmp_path / "index"
    not_training.mkdir()
    (not_training / "index.json").write_text("{}")
    result = runner.invoke(app, [*base, str(not_training), "s3://datasets/index"])
    assert result.exit_code == 2 and "--no-check" in result.output
    assert runner.invoke(app, [*base, str(not_training), "s3://datasets/index", "--no-check"]).exit_code == 0

    result = runner.invoke(app, [*base, str(data_dir), "datasets/esci"])
    assert result.exit_code == 2 and "s3://bucket/prefix" in result.output
