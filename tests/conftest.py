"""Shared fixtures. ``embedded_services`` starts the real Kafka broker and S3 server once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture()
def one_torch_thread():
    """On the shared 2-core machine two spinning OpenMP threads make tiny models 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is not present")
    return SHARED_DIR


@pytest.fixture(scope="session")
def embedded_services(tmp_path_factory):
    """Live settings pointing at a real Tansu broker and a real SeaweedFS S3 server for the session."""
    from minielm.config import load_settings
    from minielm.services import EmbeddedServices

    state_dir = tmp_path_factory.mktemp("services-state")
    settings = load_settings(overrides=[f"paths.state_dir={state_dir}"], environ={})
    services = EmbeddedServices(settings)
    live = services.start()
    yield live
    services.stop()


@pytest.fixture()
def object_store(embedded_services):
    from minielm.storage import ObjectStore

    return ObjectStore(embedded_services.s3)
