"""The model server end to end: real Kafka and S3 (embedded), a real applied Feast repo, KServe over HTTP.

Models are registered in the S3 registry and served by stage; requests go through httpx to 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import httpx
import pandas as pd
import pytest
from kafka import TopicPartition

from minielm.features.keys import query_key
from minielm.features.repo import apply_repo, feature_store, materialize, write_offline_table
from minielm.features.tables import product_feature_table, query_stats_table
from minielm.kafka_io import make_consumer
from minielm.registry import ModelRegistry
from minielm.search import SearchIndex
from minielm.storage import ObjectStore
from serving.app import PIPELINE_NAME, build_stack, serve_stack
from tests.serving_standins import SPELLING, OverlapScorer, SpellingRewriter

pytestmark = pytest.mark.integration

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["B01", "B02", "B03", "B04"],
        "product_locale": ["us"] * 4,
        "product_title": ["Acme wireless headphones", "Acme wired headphones", "Blue running shoes", "Red wool hat"],
        "product_description": [""] * 4,
        "product_bullet_point": [""] * 4,
        "product_brand": ["Acme", "Acme", "Stride", None],
        "product_color": ["black", "white", "blue", "red"],
        "category": ["audio", "audio", "footwear", "apparel"],
        "price": [59.0, 19.0, 80.0, 25.0],
    }
)
KNOWN_QUERY = "Wireles  Hedphones"


@pytest.fixture(scope="module")
def serving_settings(embedded_services, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    registry = ModelRegistry(ObjectStore(embedded_services.s3))
    suffix = uuid.uuid4().hex[:6]
    rewriter_name, relevance_name = f"student-rewriter-{suffix}", f"student-relevance-{suffix}"
    # The registry writes its own metadata.json: the loader's model_class travels in the registered metadata.
    rewriter = registry.register(
        rewriter_name,
        SpellingRewriter(SPELLING).save(root / "rewriter"),
        {"model_class": "tests.serving_standins:SpellingRewriter"},
    )
    registry.promote(rewriter_name, rewriter.version, "production")
    relevance = registry.register(
        relevance_name,
        OverlapScorer().save(root / "relevance"),
        {"model_class": "tests.serving_standins:OverlapScorer"},
    )
    registry.promote(relevance_name, relevance.version, "production")
    SearchIndex.build(PRODUCTS).save(root / "index")
    settings = embedded_services.model_copy(deep=True)
    settings.paths.models_dir = root / "models"
    settings.models.student_rewriter = rewriter_name
    settings.models.student_relevance = relevance_name
    settings.feast.repo_path = root / "feature_repo"
    settings.feast.online_timeout_ms = 1000.0  # correctness here, not latency (the benchmark measures that)
    settings.serving.index_dir = root / "index"
    settings.serving.max_batch_size = 8
    settings.serving.max_query_chars = 64
    # Feast: apply, product features offline -> online, query stats through the push source.
    apply_repo(settings)
    write_offline_table(settings, "product_features.parquet", product_feature_table(PRODUCTS))
    materialize(settings)
    now = time.time()
    windows = pd.DataFrame(
        {
            "query": [KNOWN_QUERY.lower()] * 2,
            "ts": [now - 10, now - 5],
            "impressions": [10, 10],
            "clicks": [2, 4],
            "add_to_carts": [1, 1],
            "reformulated": [False, True],
            "n_results": [10, 0],
        }
    )
    feature_store(settings).push("query_stats_push", query_stats_table(windows))
    return settings, {"rewriter": rewriter.version, "relevance": relevance.version}


@pytest.fixture(scope="module")
def server(serving_settings, tmp_path_factory):
    settings, versions = serving_settings
    catalog_dir = tmp_path_factory.mktemp("catalog")
    PRODUCTS.to_parquet(catalog_dir / "shopping_queries_dataset_products.parquet")
    pd.DataFrame(
        {
            "example_id": ["1"],
            "query": ["x"],
            "query_id": ["1"],
            "product_id": ["B01"],
            "product_locale": ["us"],
            "esci_label": ["E"],
            "small_version": [1],
            "large_version": [1],
            "split": ["train"],
        }
    ).to_parquet(catalog_dir / "shopping_queries_dataset_examples.parquet")
    settings = settings.model_copy(deep=True)
    settings.serving.dataset_dir = catalog_dir
    stack = build_stack(settings)
    running = serve_stack(stack, settings, port=0)
    yield running, settings, versions, stack
    running.stop()


def test_the_server_shortens_the_gil_switch_interval(server):
    """The generation thread takes the GIL back many times per batch; the event loop must not keep it 5 ms."""
    _, settings, _, _ = server
    assert sys.getswitchinterval() == pytest.approx(settings.serving.gil_switch_interval_ms / 1000)


def test_rewrite_v1_carries_version_request_id_and_feast_features(server):
    running, settings, versions, _ = server
    name = settings.models.student_rewriter
    response = httpx.post(
        f"{running.url}/v1/models/{name}:predict",
        headers={"x-request-id": "req-1"},
        json={"instances": [{"query": KNOWN_QUERY}, "blu shoos"], "parameters": {"num_return": 2}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name and body["model_version"] == versions["rewriter"]
    assert body["request_id"] == "req-1" and response.headers["x-request-id"] == "req-1"
    first, second = body["predictions"]
    assert first["request_id"] == "req-1.0" and second["request_id"] == "req-1.1"
    assert [r["text"] for r in first["rewrites"]] == ["wireless headphones", "wireless headphones (1)"]
    assert first["query_key"] == query_key(KNOWN_QUERY)
    assert first["features"]["source"] == "feast"
    assert first["features"]["volume"] == 2 and first["features"]["ctr"] == pytest.approx(0.3)
    assert second["features"]["source"] == "default" and second["features"]["volume"] == 0


def test_rewrite_v2_infer(server):
    running, settings, versions, _ = server
    name = settings.models.student_rewriter
    payload = {
        "id": "v2-req",
        "inputs": [{"name": "query", "shape": [2], "datatype": "BYTES", "data": ["wireles hedphones", "red hat"]}],
    }
    response = httpx.post(f"{running.url}/v2/models/{name}/infer", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name and body["model_version"] == versions["rewriter"] and body["id"] == "v2-req"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["rewrite"]["data"] == ["wireless headphones", "red hat"] and outputs["rewrite"]["shape"] == [2, 1]


def test_pipeline_returns_products_and_logs_to_kafka(server):
    running, settings, versions, stack = server
    request_id = f"pipe-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{running.url}/v1/models/{PIPELINE_NAME}:predict",
        headers={"x-request-id": request_id},
        json={"instances": [{"query": KNOWN_QUERY}], "parameters": {"k": 3}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == versions["rewriter"] and body["relevance_model_version"] == versions["relevance"]
    prediction = body["predictions"][0]
    assert prediction["rewrite"] == "wireless headphones"
    products = prediction["products"]
    assert products[0]["product_id"] == "B01" and products[0]["title"] == "Acme wireless headphones"
    # Relevance judges the products against the query as the shopper typed it (misspelled: no overlap).
    assert products[0]["relevance"] == pytest.approx(0.0)
    assert products[0]["features"]["category"] == "audio" and products[0]["features"]["price"] == pytest.approx(59.0)
    # The served rewrite arrives on the rewrites topic.
    consumer = make_consumer(settings.kafka, group_id=None, consumer_timeout_ms=1000)
    partitions = [
        TopicPartition(settings.kafka.topics.rewrites, p)
        for p in consumer.partitions_for_topic(settings.kafka.topics.rewrites)
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found, deadline = None, time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        for record in consumer:
            event = json.loads(record.value)
            if event["request_id"] == request_id:
                found = event
                break
    consumer.close()
    assert found is not None, "the served rewrite never reached Kafka"
    assert found["event_type"] == "served_rewrite" and found["rewrite"] == "wireless headphones"
    assert found["model_name"] == settings.models.student_rewriter and found["model_version"] == versions["rewriter"]
    assert found["product_ids"] == [p["product_id"] for p in products]
    assert stack.rewrite_log.dropped == 0


def test_relevance_by_ids_and_by_v2_texts(server):
    running, settings, versions, _ = server
    name = settings.models.student_relevance
    response = httpx.post(
        f"{running.url}/v1/models/{name}:predict",
        json={"instances": [{"query": "blue shoes", "product_ids": ["B03", "B04"]}]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == versions["relevance"]
    assert body["predictions"][0]["scores"] == pytest.approx([1.0, 0.0])
    payload = {
        "inputs": [
            {"name": "query", "shape": [1], "datatype": "BYTES", "data": ["red hat"]},
            {"name": "product_text", "shape": [1], "datatype": "BYTES", "data": ["Red wool hat"]},
        ]
    }
    response = httpx.post(f"{running.url}/v2/models/{name}/infer", json=payload)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["score"]["data"] == pytest.approx([1.0]) and outputs["probabilities"]["shape"] == [1, 4]


def bad_inputs(rewriter: str, relevance: str) -> list[tuple[str, str, dict | bytes, str]]:
    """(path, content kind, body, field the 400 must name)."""
    v1, v2 = f"/v1/models/{rewriter}:predict", f"/v2/models/{rewriter}/infer"

    def query(data, **kw):
        return {"inputs": [{"name": "query", "shape": [len(data)], "datatype": "BYTES", "data": data, **kw}]}

    return [
        (v1, "json", {"queries": ["x"]}, "instances"),
        (v1, "json", {"instances": "wireless"}, "instances"),
        (v1, "json", {"instances": []}, "instances"),
        (v1, "json", {"instances": [{"query": 42}]}, "instances[0].query"),
        (v1, "json", {"instances": [{"query": None}]}, "instances[0].query"),
        (v1, "json", {"instances": [{"text": "x"}]}, "instances[0].text"),
        (v1, "json", {"instances": [{"query": ""}]}, "instances[0].query"),
        (v1, "json", {"instances": [{"query": "   "}]}, "instances[0].query"),
        (v1, "json", {"instances": [{"query": "x" * 10240}]}, "instances[0].query"),
        (v1, "json", {"instances": [{"query": "ok"}] * 9}, "serving.max_batch_size"),
        (v1, "json", {"instances": ["ok"], "parameters": {"num_return": "two"}}, "parameters.num_return"),
        (v1, "json", {"instances": ["ok"], "parameters": {"num_return": 99}}, "parameters.num_return"),
        (v1, "json", {"instances": ["ok"], "parameters": {"features": "yes"}}, "parameters.features"),
        (v1, "json", {"instances": ["ok"], "parameters": {"temperature": 1}}, "parameters.temperature"),
        (v1, "json", [1, 2, 3], "request body"),
        (v1, "raw", b'{"instances": [{"query": "caf\xe9 \xff"}]}', "instances[0].query"),
        (v1, "raw", b"\xff\xfe not json", "request body"),
        (v1, "raw", b'{"instances": [', "request format"),
        (v2, "json", {"inputs": "query"}, "inputs"),
        (v2, "json", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}, "inputs"),
        (v2, "json", query(["x"], datatype="FP32"), "inputs[query].datatype"),
        (v2, "json", query([""]), "inputs[query].data[0]"),
        (v2, "json", query(["x" * 10240]), "inputs[query].data[0]"),
        (v2, "json", query(["a"] * 9), "serving.max_batch_size"),
        (
            v2,
            "json",
            {"inputs": [{"name": "query", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
            "inputs[query].shape",
        ),
        (f"/v1/models/{relevance}:predict", "json", {"instances": [{"query": "x"}]}, "instances[0]"),
        (
            f"/v1/models/{relevance}:predict",
            "json",
            {"instances": [{"query": "x", "product_ids": ["NOPE"]}]},
            "instances[0].product_ids",
        ),
        (f"/v1/models/{PIPELINE_NAME}:predict", "json", {"instances": ["x"], "parameters": {"k": 0}}, "parameters.k"),
    ]


def test_bad_input_corpus_gets_400_naming_the_field_and_server_stays_up(server):
    running, settings, _, _ = server
    corpus = bad_inputs(settings.models.student_rewriter, settings.models.student_relevance)
    with httpx.Client(base_url=running.url, timeout=10) as client:
        for path, kind, body, field in corpus:
            if kind == "json":
                response = client.post(path, json=body)
            else:
                response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, (path, body if kind == "json" else body[:40], response.text)
            assert field in response.json()["error"], (field, response.text)
        assert client.get("/v2/health/ready").status_code == 200
        ok = client.post(f"/v1/models/{settings.models.student_rewriter}:predict", json={"instances": ["blu hat"]})
        assert ok.status_code == 200
        metrics = client.get("/metrics").text
    rewriter = settings.models.student_rewriter
    assert f'minielm_requests_total{{code="400",endpoint="v1",model="{rewriter}"}}' in metrics
    assert 'minielm_errors_total{type="invalid_input"}' in metrics
    assert "minielm_request_latency_seconds_bucket" in metrics
    assert "minielm_kafka_dropped_total" in metrics
    assert 'minielm_feast_wait_seconds_bucket{le="0.001",view="query_stats"}' in metrics


def test_readiness_only_for_loaded_models(server):
    running, settings, _, _ = server
    with httpx.Client(base_url=running.url) as client:
        ready = client.get(f"/v2/models/{settings.models.student_rewriter}/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert client.get("/v2/models/not-served/ready").status_code == 404


def _fallbacks(metrics: str, reason: str) -> float:
    line = next(
        (row for row in metrics.splitlines() if row.startswith(f'minielm_feast_fallback_total{{reason="{reason}"}}')),
        None,
    )
    return float(line.split()[-1]) if line else 0.0


def test_feast_outage_degrades_to_defaults_and_counts(serving_settings, tmp_path):
    settings, _ = serving_settings
    settings = settings.model_copy(deep=True)
    settings.feast.repo_path = tmp_path / "never-applied"  # Feast is down: no store to read
    settings.serving.log_rewrites = False
    stack = build_stack(settings, with_relevance=False, with_pipeline=False)
    running = serve_stack(stack, settings, port=0)
    try:
        with httpx.Client(base_url=running.url) as client:
            before = _fallbacks(client.get("/metrics").text, "error")
            response = client.post(
                f"/v1/models/{settings.models.student_rewriter}:predict", json={"instances": [KNOWN_QUERY, "red hat"]}
            )
            assert response.status_code == 200, response.text
            predictions = response.json()["predictions"]
            assert all(p["features"]["source"] == "default" and p["features"]["ctr"] == 0.0 for p in predictions)
            assert predictions[0]["rewrites"][0]["text"] == "wireless headphones"
            assert _fallbacks(client.get("/metrics").text, "error") == before + 2
    finally:
        running.stop()


def _tiny_cross_encoder(directory):
    """A real CrossEncoderScorer on a 2-layer, 32-wide BERT with a word vocabulary (random weights)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from minielm.models.cross_encoder import CrossEncoderScorer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "hat", "wool", "blue", "shoes", "acme", "|"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    scorer = CrossEncoderScorer.from_encoder(BertModel(config, add_pooling_layer=False), tokenizer, max_length=32)
    return scorer, scorer.save(directory)


def test_real_cross_encoder_from_the_registry(serving_settings, tmp_path):
    settings, _ = serving_settings
    settings = settings.model_copy(deep=True)
    settings.serving.log_rewrites = False
    scorer, directory = _tiny_cross_encoder(tmp_path / "cross-encoder")
    registry = ModelRegistry(ObjectStore(settings.s3))
    settings.models.student_relevance = f"tiny-cross-encoder-{uuid.uuid4().hex[:6]}"
    # No model_class in the metadata: the loader recognises the cross-encoder by its files.
    entry = registry.register(settings.models.student_relevance, directory)
    registry.promote(settings.models.student_relevance, entry.version, "production")
    stack = build_stack(settings, with_pipeline=False)
    running = serve_stack(stack, settings, port=0)
    try:
        response = httpx.post(
            f"{running.url}/v1/models/{settings.models.student_relevance}:predict",
            json={"instances": [{"query": "red hat", "product_texts": ["Red wool hat", "Blue shoes"]}]},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == entry.version
        prediction = body["predictions"][0]
        expected = scorer.score(["red hat"] * 2, ["Red wool hat", "Blue shoes"])
        assert prediction["scores"] == pytest.approx(expected.tolist(), abs=1e-5)
        assert [sum(p) for p in prediction["probabilities"]] == pytest.approx([1.0, 1.0], abs=1e-5)
    finally:
        running.stop()


def test_real_causal_rewriter_from_a_local_dir(serving_settings, tmp_path):
    from transformers import AutoModelForCausalLM

    from minielm.models.backbones import tiny_llama_config
    from minielm.models.ct2_rewriter import CTranslate2Rewriter
    from minielm.models.rewriter import CausalRewriter
    from minielm.models.tokenizer import train_bpe_tokenizer

    settings, _ = serving_settings
    settings = settings.model_copy(deep=True)
    settings.serving.log_rewrites = False
    tokenizer = train_bpe_tokenizer(["wireless headphones", "blue running shoes", "red wool hat"] * 5, vocab_size=300)
    model = AutoModelForCausalLM.from_config(
        tiny_llama_config(tokenizer, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64)
    )
    directory = CausalRewriter(model, tokenizer, version="tiny-1", max_new_tokens=6).save(tmp_path / "rewriter")
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata.pop("model_class")  # the loader must recognise a causal LM by its config.json
    (directory / "metadata.json").write_text(json.dumps(metadata))
    settings.serving.rewriter_path = directory
    stack = build_stack(settings, with_relevance=False, with_pipeline=False)
    running = serve_stack(stack, settings, port=0)
    try:
        response = httpx.post(
            f"{running.url}/v1/models/{settings.models.student_rewriter}:predict",
            json={"instances": ["wireles hedphones"]},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == "tiny-1"
        served = stack.models[0].loaded.model
        assert isinstance(served, CTranslate2Rewriter)  # serving.generation_backend's default, converted at load
        assert body["predictions"][0]["rewrites"][0]["text"] == served.rewrite(["wireles hedphones"])[0][0]
    finally:
        running.stop()
