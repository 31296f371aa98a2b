"""S3 helpers and the model registry against the real SeaweedFS server."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from minielm.registry import ModelRegistry, RegistryError
from minielm.storage import ObjectNotFound

pytestmark = pytest.mark.integration


@pytest.fixture()
def prefix():
    return f"test-{uuid.uuid4().hex[:8]}"


def test_bytes_json_parquet_round_trip(object_store, prefix):
    object_store.put_bytes(f"{prefix}/raw.bin", b"\x00\x01")
    object_store.put_json(f"{prefix}/doc.json", {"a": [1, 2]})
    frame = pd.DataFrame({"query": ["red shoe", "blk mug"], "clicks": [3, 0]})
    object_store.put_parquet(f"{prefix}/table.parquet", frame)
    assert object_store.get_bytes(f"{prefix}/raw.bin") == b"\x00\x01"
    assert object_store.get_json(f"{prefix}/doc.json") == {"a": [1, 2]}
    pd.testing.assert_frame_equal(object_store.get_parquet(f"{prefix}/table.parquet"), frame)
    assert sorted(object_store.list_keys(prefix)) == [
        f"{prefix}/doc.json",
        f"{prefix}/raw.bin",
        f"{prefix}/table.parquet",
    ]
    assert object_store.exists(f"{prefix}/doc.json") and not object_store.exists(f"{prefix}/absent")


def test_missing_object_raises_object_not_found(object_store, prefix):
    with pytest.raises(ObjectNotFound, match=prefix):
        object_store.get_bytes(f"{prefix}/absent.json")
    assert object_store.read_pointer(f"{prefix}/absent-pointer.json") is None


def test_listing_crosses_pages(object_store, prefix):
    for index in range(1005):
        object_store.client.put_object(Bucket=object_store.bucket, Key=f"{prefix}/{index:05d}", Body=b"")
    assert len(list(object_store.list_keys(prefix))) == 1005


def test_directories_upload_and_download(object_store, prefix, tmp_path):
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(b"w" * 1000)
    object_store.upload_dir(source, f"{prefix}/model")
    target = tmp_path / "copy"
    object_store.download_dir(f"{prefix}/model", target)
    assert (target / "sub" / "weights.bin").read_bytes() == b"w" * 1000


def test_registry_register_promote_rollback(object_store, tmp_path):
    registry = ModelRegistry(object_store)
    name = f"model-{uuid.uuid4().hex[:6]}"
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"1")
    first = registry.register(name, model_dir, {"metrics": {"relevant_per_query": 2.0}}, version="v1")
    (model_dir / "weights.bin").write_bytes(b"2")
    second = registry.register(name, model_dir, {"parent_version": "v1"}, version="v2")
    assert registry.versions(name) == ["v1", "v2"]
    assert registry.stage(name, "production") is None
    registry.promote(name, first.version, "production")
    registry.promote(name, second.version, "production")
    assert registry.stage(name, "production").version == "v2"
    registry.rollback(name, "production")
    assert registry.stage(name, "production").version == "v1"
    downloaded = registry.download(name, "v1", tmp_path / "dl")
    assert (downloaded / "weights.bin").read_bytes() == b"1"
    assert registry.get(name, "v1").metadata["metrics"] == {"relevant_per_query": 2.0}


def test_registry_rejects_unknown_versions_and_stages(object_store, tmp_path):
    registry = ModelRegistry(object_store)
    with pytest.raises(RegistryError, match="no version"):
        registry.promote("absent-model", "v9", "production")
    with pytest.raises(RegistryError, match="stage must be one of"):
        registry.stage("absent-model", "staging")
    with pytest.raises(RegistryError, match="missing or empty"):
        registry.register("absent-model", tmp_path / "nothing")
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback("absent-model")
