"""The serving demo step on a small synthetic catalog: Feast applied, server left running, real requests."""

from __future__ import annotations

import uuid

import httpx
import pytest

from minielm.data.esci import write_esci
from minielm.data.synthetic import generate_dataset
from minielm.demo import DemoContext
from minielm.demo.artifacts import DemoArtifacts
from minielm.demo.serving_step import serving_demo_step
from minielm.search import SearchIndex
from minielm.storage import ObjectStore
from serving.app import PIPELINE_NAME
from tests.serving_standins import SPELLING, OverlapScorer, SpellingRewriter

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_serving_demo_step_leaves_a_running_server(embedded_services, tmp_path):
    settings = embedded_services.model_copy(deep=True)
    suffix = uuid.uuid4().hex[:6]
    # Names nobody registered: the step must fall back to the local dirs from earlier steps.
    settings.models.student_rewriter = f"demo-rewriter-{suffix}"
    settings.models.student_relevance = f"demo-relevance-{suffix}"
    settings.feast.repo_path = tmp_path / "feature_repo"
    dataset = generate_dataset(n_products=200, n_queries=40, seed=1)
    lines: list[str] = []
    ctx = DemoContext(settings=settings, workdir=tmp_path, store=ObjectStore(settings.s3), echo=lines.append)
    ctx.artifacts = DemoArtifacts(
        dataset_dir=write_esci(dataset, tmp_path / "data"),
        index_dir=SearchIndex.build(dataset.products).save(tmp_path / "index"),
        student_rewriter_dir=SpellingRewriter(SPELLING).save(tmp_path / "rewriter"),
        student_relevance_dir=OverlapScorer().save(tmp_path / "relevance"),
    )
    serving_demo_step(ctx)
    try:
        output = "\n".join(lines)
        assert f"/v1/models/{PIPELINE_NAME}:predict" in output and "HTTP 400" in output
        predictions = ctx.artifacts.serving_demo["predictions"]
        assert predictions and all(p["products"] for p in predictions)
        response = httpx.post(
            f"{ctx.artifacts.serving_url}/v1/models/{PIPELINE_NAME}:predict",
            json={"instances": [predictions[0]["query"]]},
        )
        assert response.status_code == 200
        assert (tmp_path / "feature_repo" / "feature_store.yaml").is_file()
    finally:
        ctx.artifacts.serving_stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{ctx.artifacts.serving_url}/v2/health/live", timeout=2)
