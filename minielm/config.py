"""The one typed configuration of the platform.

Every setting a stage reads lives here. Values are layered, later wins:

1. the defaults below (embedded services on 127.0.0.1, toy-scale training);
2. the endpoints that ``minielm services up`` wrote to ``<state_dir>/services.json``;
3. a YAML file (``--config FILE`` or ``$MINIELM_CONFIG``);
4. environment variables ``MINIELM_<SECTION>__<FIELD>`` (e.g. ``MINIELM_KAFKA__BOOTSTRAP_SERVERS``);
5. command-line overrides ``--set section.field=value``.

Invalid values raise :class:`ConfigError` naming the field and what was expected.
Secrets (S3 keys) come from the environment or the services state file, never from defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator, model_validator

from minielm.config_base import StrictConfig, deep_merge
from minielm.errors import InputError
from minielm.teachers.config import TeachersConfig

ENV_PREFIX = "MINIELM_"
CONFIG_ENV = "MINIELM_CONFIG"
SERVICES_STATE_FILE = "services.json"


def _http_url_or_null(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s):// URL or null, got {value!r}")
    return value


def _s3_key(value: str) -> str:
    if value.startswith("/") or value.endswith("/"):
        raise ValueError(f"expected an S3 key without leading or trailing '/', got {value!r}")
    return value


# Setting types shared by several sections, each validated in one place.
OptionalHttpUrl = Annotated[str | None, AfterValidator(_http_url_or_null)]
S3Key = Annotated[str, AfterValidator(_s3_key)]


class ConfigError(InputError):
    """A setting is missing or invalid; the message names the field."""


class PathsConfig(StrictConfig):
    """Where local data, state and artefacts go (relative paths resolve against the working dir)."""

    state_dir: Path = Field(
        Path(".minielm"),
        description="local state: the embedded services' endpoints file, caches (relative: the working dir)",
    )
    data_dir: Path = Field(Path(".minielm/data"), description="generated and downloaded datasets")
    models_dir: Path = Field(Path(".minielm/models"), description="locally trained model directories")
    runs_dir: Path = Field(Path(".minielm/runs"), description="scratch and checkpoints of training runs")
    reports_dir: Path = Field(Path(".minielm/reports"), description="evaluation and drift reports written by the CLI")
    esci_sample_dir: Path = Field(
        Path("../shared/data/esci-sample"),
        description="the real ESCI sample (judgments, UBI logs) used by `data sample` and `feedback replay`",
    )


class KafkaTopics(StrictConfig):
    rewrites: str = Field(
        "minielm.rewrites", description="topic of served rewrites (request_id, query, rewrite, model version)"
    )
    feedback: str = Field(
        "minielm.feedback",
        description="topic of shopper feedback events (impression, click, add_to_cart, purchase, reformulation)",
    )
    dead_letter: str = Field("minielm.feedback.dlq", description="topic where invalid events go, with the reason")

    def all(self) -> list[str]:
        return [self.rewrites, self.feedback, self.dead_letter]


class KafkaConfig(StrictConfig):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port of the Kafka brokers")
    topics: KafkaTopics = KafkaTopics()
    partitions: int = Field(
        2, ge=1, le=1024, description="partitions of the rewrites and feedback topics (created co-partitioned)"
    )
    consumer_group: str = Field("minielm-aggregator", description="consumer group of the feedback aggregator")
    client_id: str = Field("minielm", description="client id every producer and consumer reports to the broker")
    session_timeout_ms: int = Field(
        6000,
        ge=1000,
        description="consumer-group session timeout; with kafka-python's 10 s the embedded Tansu forms groups slowly",
    )
    heartbeat_interval_ms: int = Field(1000, ge=100, description="consumer-group heartbeat interval")
    request_timeout_ms: int = Field(
        15000, ge=1000, description="timeout of one broker request, and of flushing the producer"
    )
    # Security (PLAINTEXT for the embedded broker). SASL_SSL with SCRAM is what a Strimzi listener
    # on 9093 with `authentication: scram-sha-512` expects; the password comes from a Secret
    # through $MINIELM_KAFKA__SASL_PASSWORD and the CA file from a mounted Secret.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the brokers (PLAINTEXT for the embedded broker)"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with a SASL_* protocol)"
    )
    sasl_username: str | None = Field(None, description="SASL user name (with a SASL_* protocol)")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password: from $MINIELM_KAFKA__SASL_PASSWORD (a Secret), never a default"
    )
    ssl_cafile: Path | None = Field(None, description="PEM CA bundle that signed the brokers' certificates")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client key (mutual TLS)")

    @field_validator("sasl_password", mode="before")
    @classmethod
    def _password_as_text(cls, value: Any) -> Any:
        # An all-digit password read from the environment parses as a number.
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaConfig:
        sasl = self.security_protocol.startswith("SASL_")
        # The password is checked when a client is made (minielm.kafka_io): it reaches pods only
        # through the environment, and settings without it still load for everything else.
        if sasl and not (self.sasl_mechanism and self.sasl_username):
            raise ValueError(f"security_protocol={self.security_protocol} needs sasl_mechanism and sasl_username")
        if not sasl and self.sasl_mechanism:
            raise ValueError(
                f"sasl_mechanism={self.sasl_mechanism} needs security_protocol SASL_PLAINTEXT or SASL_SSL, "
                f"got {self.security_protocol}"
            )
        tls_files = [f for f in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, f) is not None]
        if tls_files and not self.security_protocol.endswith("SSL"):
            raise ValueError(
                f"{', '.join(tls_files)} need security_protocol SSL or SASL_SSL, got {self.security_protocol}"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below session_timeout_ms "
                f"({self.session_timeout_ms})"
            )
        return self

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected comma-separated host:port pairs, got {value!r}")
        return value


class S3Config(StrictConfig):
    endpoint_url: OptionalHttpUrl = Field("http://127.0.0.1:8333", description="S3 endpoint URL; None: AWS S3")
    bucket: str = Field("minielm", description="bucket of the model registry, feedback windows and reports")
    region: str = Field("us-east-1", description="S3 region")
    access_key_id: SecretStr | None = Field(
        None, description="S3 access key id (from the environment or services state, never a default)"
    )
    secret_access_key: SecretStr | None = Field(
        None, description="S3 secret key (from the environment or services state, never a default)"
    )
    max_attempts: int = Field(
        5, ge=1, le=20, description="attempts per S3 call; 5xx, throttling and timeouts are retried with backoff"
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not 3 <= len(value) <= 63 or not all(c.islower() or c.isdigit() or c in "-." for c in value):
            raise ValueError("expected 3-63 lowercase letters, digits, '-' or '.'")
        return value


class ServicesConfig(StrictConfig):
    """The embedded Kafka (Tansu) and S3 (SeaweedFS) servers; port 0 picks a free port."""

    host: Literal["127.0.0.1"] = Field(
        "127.0.0.1", description="address the embedded Kafka and S3 servers bind (loopback only)"
    )
    kafka_port: int = Field(0, ge=0, lt=65536, description="port of the embedded Kafka broker; 0 picks a free port")
    s3_port: int = Field(0, ge=0, lt=65536, description="port of the embedded S3 server; 0 picks a free port")
    start_timeout_s: float = Field(60.0, gt=0, description="longest wait for the embedded servers to become healthy")
    stop_timeout_s: float = Field(
        15.0, gt=0, description="longest wait for an embedded server to stop before it is killed"
    )


class FeastConfig(StrictConfig):
    """``repo_path`` is the applied repo (definitions + generated feature_store.yaml + local data)."""

    repo_path: Path = Field(
        Path("feature_repo"),
        description="the applied Feast repo: definitions, generated feature_store.yaml, local data",
    )
    project: str = Field("minielm", description="Feast project name")
    # Latency budget of one online lookup; past it the request is served with default features.
    online_timeout_ms: float = Field(
        5.0,
        gt=0,
        description="latency budget of one online lookup; past it the request is served with default features",
    )
    online_memory_ttl_s: float = Field(
        5.0,
        ge=0,
        description="a server keeps each query's Feast row in memory this long (one aggregator window by default), "
        "so a head query's features cost no store read; 0: every request reads Feast",
    )
    online_memory_entries: int = Field(
        100000, ge=0, description="most query rows a server keeps in memory (least recently used go first); 0: none"
    )
    profile: Literal["local", "cluster"] = Field(
        "local", description="local: sqlite online and file offline store; cluster: Redis online and S3 offline store"
    )
    redis_connection_string: str = Field(
        "redis:6379", description="Redis online store of the cluster profile (host:port[,options])"
    )
    # Offline parquet root for the cluster profile (e.g. s3://minielm/feast); local uses <repo_path>/data.
    offline_root: str | None = Field(
        None, description="offline parquet root for the cluster profile (s3:// URI); local uses <repo_path>/data"
    )
    ttl_days: int = Field(
        30, ge=1, description="how long a feature value stays valid, and the default materialisation look-back"
    )


class ModelNames(StrictConfig):
    teacher_rewriter: str = Field("teacher-rewriter", description="registry name of the teacher rewriter")
    teacher_relevance: str = Field("teacher-relevance", description="registry name of the teacher relevance classifier")
    student_rewriter: str = Field("student-rewriter", description="registry name of the served student rewriter")
    student_relevance: str = Field(
        "student-relevance", description="registry name of the student cross-encoder (also the feedback judge)"
    )
    relevance_judge: str = Field(
        "student-relevance", description="registered relevance model that judges rewrites (RL reward, rewrite-search)"
    )
    relevance_simulator: str = Field(
        "teacher-relevance", description="registered relevance model the simulated shopper uses (not the judge)"
    )

    @model_validator(mode="after")
    def _independent_judges(self) -> ModelNames:
        if self.relevance_judge == self.relevance_simulator:
            raise ValueError(
                f"relevance_judge and relevance_simulator are both {self.relevance_judge!r}: the simulated "
                "shopper must not be the network that judges the rewrites"
            )
        return self


class ServingConfig(StrictConfig):
    host: str = Field("127.0.0.1", description="address the model server binds")
    http_port: int = Field(
        8080, gt=0, lt=65536, description="HTTP port of the model server (v1 :predict, v2 /infer, /metrics)"
    )
    grpc_port: int = Field(8081, gt=0, lt=65536, description="gRPC port of the model server (when gRPC is enabled)")
    max_batch_size: int = Field(64, ge=1, description="most instances in one request; larger batches are a 400")
    max_query_chars: int = Field(256, ge=1, description="longest query accepted; longer ones are a 400")
    model_stage: Literal["production", "candidate"] = Field(
        "production", description="registry stage the server loads when no local model path is given"
    )
    # Local model dirs override the registry (None: download the staged version from S3).
    rewriter_path: Path | None = Field(
        None, description="local rewriter model dir; None: the staged version from the registry"
    )
    relevance_path: Path | None = Field(
        None, description="local relevance model dir; None: the staged version from the registry"
    )
    index_dir: Path | None = Field(
        None,
        description="saved BM25 index for the rewrite-search endpoint; None: index_prefix, else that endpoint is off",
    )
    index_prefix: str | None = Field(
        None, description="S3 prefix of a saved search index, downloaded at start when index_dir is not set"
    )
    registry_poll_s: float = Field(
        30.0, ge=0, description="seconds between reads of the served registry stage; 0 never re-reads it"
    )
    # ESCI-layout dataset whose products give titles/texts for product ids (relevance by id, pipeline).
    dataset_dir: Path | None = Field(
        None, description="ESCI-layout dataset whose products give texts for product ids (relevance by id)"
    )
    max_num_rewrites: int = Field(5, ge=1, description="most rewrites a request may ask for (parameters.num_return)")
    search_k: int = Field(10, ge=1, le=1000, description="products the rewrite-search endpoint returns per query")
    enable_feast: bool = Field(
        True, description="enrich requests with Feast query features (defaults when Feast is slow or down)"
    )
    log_rewrites: bool = Field(
        True, description="log every served rewrite to the rewrites topic (the feedback loop's input)"
    )
    kafka_buffer_size: int = Field(
        10000,
        ge=1,
        description="served rewrites buffered while the broker is slow; beyond it they are dropped and counted",
    )
    warmup_query: str = Field(
        "wireless headphones",
        min_length=1,
        description="query each model answers once at start-up, before it reports ready",
    )
    generation_backend: Literal["ctranslate2", "huggingface"] = Field(
        "ctranslate2",
        description="how the rewriter generates: CTranslate2 (int8 CPU, float16 GPU; falls back to Hugging Face "
        "with a warning when a model cannot be converted) or Hugging Face generate",
    )
    generation_threads: int = Field(1, ge=1, description="CPU threads CTranslate2 uses for one generation batch")
    gil_switch_interval_ms: float = Field(
        0.2,
        gt=0,
        le=5,
        description="the server process's sys.setswitchinterval: how long a thread that wants the GIL waits for "
        "the one holding it; the generation thread takes the GIL back many times per batch (tokenizing, the step "
        "logits), and with Python's 5 ms default each return waits behind the busy event loop (a batch of 16 took "
        "43.8 ms per query beside a busy thread, 9.7 ms at 0.2 ms, 6.5 ms alone: benchmarks/generation_gil.py)",
    )
    max_new_tokens_over_query: int | None = Field(
        8,
        ge=1,
        description="a served greedy rewrite stops after the query's token count plus this many tokens (within the "
        "model's max_new_tokens), so a runaway generation costs a few tokens, not the whole budget; null: no cap",
    )
    batch_window_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="concurrent rewrite requests arriving within this window run as one generation batch (0: off)",
    )
    exploration_share: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="share of rewrite-search requests served a non-greedy beam rewrite that passes the intent guard "
        "(logged with exploration: true), so RL feedback compares rewrites of the same query; 0 disables",
    )
    exploration_candidates: int = Field(
        4, ge=2, le=16, description="beam rewrites an exploring request picks its alternative from"
    )


class RewriteCacheConfig(StrictConfig):
    """The head-query rewrite cache: rewrites of the most frequent queries, made by the served version
    after a promotion and kept in the Feast online store keyed by query and model version."""

    enabled: bool = Field(
        True, description="answer single-rewrite requests for cached queries without running the model"
    )
    top_queries: int = Field(
        10000, ge=1, description="most frequent queries in the feedback windows the warm-up job rewrites"
    )
    min_requests: int = Field(2, ge=1, description="least requests a query needs in the feedback windows to be cached")
    lookback_days: float = Field(
        7.0, ge=0, description="feedback windows written within this many days count; 0 reads every window"
    )
    batch_size: int = Field(64, ge=1, description="queries the warm-up job rewrites per model batch")
    memory_entries: int = Field(
        100000,
        ge=0,
        description="cache hits a server keeps in memory (per query and model version) after reading them; 0: none",
    )


class EvalConfig(StrictConfig):
    top_k: int = Field(10, ge=1, description="search results counted per query (relevant products in the top k)")
    substitute_is_relevant: bool = Field(
        False, description="count ESCI Substitute products as relevant (else only Exact)"
    )


class GateConfig(StrictConfig):
    """A candidate must beat the raw query and the strongest non-neural baseline, keep its harm rate
    within target, and may lose at most these amounts vs production."""

    min_gain_over_raw: float = Field(
        0.0, description="least gain over the raw query (in metric units) a candidate must show"
    )
    min_gain_over_baseline: float = Field(
        0.0,
        description="least gain over the phrase-table + spelling baseline (metric units) a candidate must show",
    )
    max_harm_rate: float = Field(
        0.02,
        ge=0,
        le=1,
        description="most share of clean and out-of-catalog held-out queries whose rewrite may lose a content word",
    )
    max_regression_vs_production: float = Field(
        0.02, ge=0, description="most a candidate may lose against the production model (metric units)"
    )
    # The metric both tolerances are in (absolute units of that metric, from minielm.evaluation).
    metric: Literal["relevant_per_query", "ndcg", "recall"] = Field(
        "relevant_per_query", description="the metric both tolerances are in (from minielm.evaluation)"
    )


# The jobs image (docker/jobs.Dockerfile) that KFP task pods run; the chart's images.jobs default equals it.
JOBS_IMAGE = "ghcr.io/minielm/minielm-jobs:0.1.0"


class TaskResources(StrictConfig):
    """What one KFP task's pod requests (Kubernetes quantities); limits are optional."""

    cpu: str = Field("1", min_length=1, description="CPU request, e.g. 500m or 4")
    memory: str = Field("2Gi", min_length=1, description="memory request, e.g. 512Mi or 16Gi")
    cpu_limit: str | None = Field(None, description="CPU limit; None: no limit")
    memory_limit: str | None = Field(None, description="memory limit; None: no limit")


class AcceleratorConfig(StrictConfig):
    """The accelerator that the teacher and distillation tasks request."""

    type: str = Field(..., min_length=1, description="accelerator resource, e.g. nvidia.com/gpu")
    count: int = Field(1, ge=1, description="accelerators per task")


class TolerationConfig(StrictConfig):
    """A Kubernetes toleration added to every KFP task pod."""

    key: str | None = Field(None, description="taint key; None with operator Exists tolerates every taint")
    operator: Literal["Equal", "Exists"] = Field(
        "Equal", description="Equal matches key and value; Exists matches the key alone"
    )
    value: str | None = Field(None, description="taint value (operator Equal)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="taint effect tolerated; None: every effect"
    )


class PipelinesConfig(StrictConfig):
    """Where KFP pipelines are submitted on a cluster, what their task pods get, and the schedules (cron, UTC)."""

    kfp_host: OptionalHttpUrl = Field(None, description="KFP API URL; None: `minielm pipeline run` runs locally")
    ui_url: OptionalHttpUrl = Field(None, description="KFP UI URL for run links; None: kfp_host")
    namespace: str | None = Field(None, description="Kubeflow profile namespace runs go to (multi-user Kubeflow)")
    experiment: str = Field("minielm", description="KFP experiment runs are filed under")
    rl_retraining_cron: str = Field(
        "0 0 */6 * * *", description="schedule of the RL retraining pipeline (6-field cron, UTC)"
    )
    drift_monitoring_cron: str = Field(
        "0 */30 * * * *", description="schedule of the drift monitoring pipeline (6-field cron, UTC)"
    )
    data_uri: str | None = Field(
        None, description="s3:// URI of the ESCI dataset cluster runs read unless a run names its own data_uri"
    )
    index_uri: str | None = Field(None, description="s3:// URI of the BM25 index that goes with data_uri")
    image: str = Field(JOBS_IMAGE, min_length=1, description="image every task runs (the chart's images.jobs)")
    settings_configmap: str = Field(
        "minielm-settings", min_length=1, description="ConfigMap holding settings.yaml, mounted into every task"
    )
    settings_mount_path: str = Field("/etc/minielm", description="where the settings ConfigMap is mounted")
    s3_secret: str | None = Field(
        "minielm-s3", description="existing Secret with the S3 keys; None: the pod's own identity (IRSA)"
    )
    s3_access_key_id_key: str = Field("AWS_ACCESS_KEY_ID", description="key of the access key id inside s3_secret")
    s3_secret_access_key_key: str = Field(
        "AWS_SECRET_ACCESS_KEY", description="key of the secret access key inside s3_secret"
    )
    task_resources: TaskResources = Field(TaskResources(), description="requests of data, evaluation and gate tasks")
    training_task_resources: TaskResources = Field(
        TaskResources(cpu="4", memory="16Gi"), description="requests of the teacher, distillation and RL tasks"
    )
    accelerator: AcceleratorConfig | None = Field(
        None, description="accelerator of the teacher, distillation and RL training tasks; None: CPU only"
    )
    node_selector: dict[str, str] = Field({}, description="node labels every task pod must match")
    tolerations: list[TolerationConfig] = Field([], description="tolerations of every task pod")

    @field_validator("rl_retraining_cron", "drift_monitoring_cron")
    @classmethod
    def _six_field_cron(cls, value: str) -> str:
        if len(value.split()) != 6:
            raise ValueError(f"expected a 6-field KFP cron (sec min hour day month weekday), got {value!r}")
        return value

    @field_validator("data_uri", "index_uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"expected an s3://bucket/prefix URI or null, got {value!r}")
        return value

    @field_validator("settings_mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected an absolute path, got {value!r}")
        return value


class RewriterStudentConfig(StrictConfig):
    """The student rewriter: fewer, narrower decoder layers than the teacher, same tokenizer, trained on
    the teacher's rewrites (sequence-level KD) and its next-token distributions (token-level KL)."""

    num_layers: int = Field(4, ge=1, description="decoder layers of the student (at most the teacher's)")
    hidden_size: int | None = Field(None, ge=8, description="None keeps the teacher's width")
    intermediate_size: int | None = Field(None, ge=8, description="MLP width; None scales the teacher's")
    num_attention_heads: int | None = Field(None, ge=1, description="None keeps the teacher's head size")
    num_key_value_heads: int | None = Field(None, ge=1, description="None keeps the teacher's grouping")
    freeze_embeddings: bool = Field(
        False,
        description="keep the embeddings (and a tied LM head) the student inherits from the teacher fixed: tokens "
        "the distillation data never shows stay as the teacher (a pretrained LM) knows them",
    )
    output_vocabulary: Literal["domain", "full"] = Field(
        "domain",
        description="tokens the student may write: 'domain' keeps those of the train queries, the teacher's "
        "rewrites and the catalog titles (plus special and byte tokens, also lower-cased), so each generated token "
        "scores ~1/15 of the LM head (2.2-2.3x less CPU per query at 4 x 576) and every backend (eval, "
        "calibration, serving) applies it; it left relevant@10 and real-query safety unchanged on the distilled "
        "student (serving/README.md). 'full': the whole vocabulary",
    )
    seq_kd_weight: float = Field(0.5, ge=0.0, le=1.0, description="loss = w * sequence-KD CE + (1 - w) * token KL")
    kl_temperature: float = Field(2.0, gt=0.0, description="temperature of the token-level KL to the teacher")
    kd_queries: int = Field(256, ge=1, description="unlabelled queries the teacher rewrites")
    steps: int = Field(60, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="examples per step")
    learning_rate: float = Field(1e-3, gt=0.0, description="peak learning rate")
    max_new_tokens: int = Field(24, ge=1, description="longest rewrite, in tokens, of teacher and student")
    calibration_split: Literal["train", "validation", "test"] = Field(
        "validation", description="split that sets the student rewriter's selective-rewriting threshold"
    )
    calibration_queries: int = Field(200, ge=1, description="queries of calibration_split used to set it")


class RelevanceStudentConfig(StrictConfig):
    """The student relevance model: a cross-encoder on (query, product text), trained with Margin-MSE on
    the teacher's score margins between two products of one query."""

    backbone: Path | None = Field(None, description="None: all-MiniLM-L6-v2 from its wheel")
    num_layers: int | None = Field(None, ge=1, description="keep only the first N encoder layers")
    teacher_layers: list[int] | None = Field(
        None,
        description="start from the relevance teacher instead of the backbone: keep these of its decoder layers "
        "(ascending indices), its norm and ESCI head; None: start from the backbone",
    )
    max_length: int = Field(96, ge=8, description="tokens of query + product text")
    triples_per_query: int = Field(8, ge=1, description="(query, product, product) triples drawn per query")
    triple_sources: dict[str, float] = Field(
        {"retrieved": 0.5, "same_category": 0.3, "random": 0.2},
        description="where the triples' products come from, and in which shares",
    )
    retrieval_depth: int = Field(20, ge=2, description="BM25 results the 'retrieved' source draws from")
    steps: int = Field(80, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="triples per step (2 x batch_size products a step)")
    learning_rate: float = Field(5e-5, gt=0.0, description="peak learning rate")
    list_size: int = Field(
        0,
        ge=0,
        description="0: train on triples; N >= 2: train on groups of up to N teacher-labelled products of one "
        "query (all-pairs Margin-MSE + listwise KL), the same 2 x batch_size products a step",
    )
    listwise_weight: float = Field(1.0, ge=0.0, description="with list_size: weight of the listwise KL")
    listwise_temperature: float = Field(
        0.5,
        gt=0.0,
        description="with list_size: the listwise KL compares softmax(score / T) within a group (scores are in "
        "[0, 1]; 0.5 beat 0.1 and 1.0 on the validation split, docs/training.md)",
    )
    soft_label_weight: float = Field(0.5, ge=0.0, description="weight of KL to the teacher's E/S/C/I probabilities")
    soft_label_temperature: float = Field(
        1.0, gt=0.0, description="the teacher's soft labels are softmax(logits / T); T > 1 softens them"
    )
    gold_mix_weight: float = Field(0.0, ge=0.0, description="weight of a CE loss on the gold ESCI labels")
    max_ndcg_gap: float = Field(0.05, ge=0.0, description="gate: student nDCG may trail the teacher's by this much")

    @field_validator("triple_sources")
    @classmethod
    def _known_sources(cls, value: dict[str, float]) -> dict[str, float]:
        allowed = {"retrieved", "same_category", "random"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unknown triple sources {sorted(unknown)}; expected a subset of {sorted(allowed)}")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("expected non-negative weights with a positive sum")
        return value

    @field_validator("teacher_layers")
    @classmethod
    def _ascending_layers(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0 or value != sorted(set(value))):
            raise ValueError(f"expected distinct ascending layer indices >= 0, got {value}")
        return value

    @field_validator("list_size")
    @classmethod
    def _list_of_two(cls, value: int) -> int:
        if value == 1:
            raise ValueError("a group needs at least 2 products to compare; use 0 for triples or N >= 2")
        return value

    @model_validator(mode="after")
    def _one_starting_point(self) -> RelevanceStudentConfig:
        if self.teacher_layers is not None and (self.backbone is not None or self.num_layers is not None):
            raise ValueError("teacher_layers starts the student from the teacher: leave backbone and num_layers unset")
        return self


class DistillConfig(StrictConfig):
    """Distilling the teachers into the students that production serves (toy-scale defaults)."""

    rewriter: RewriterStudentConfig = RewriterStudentConfig()
    relevance: RelevanceStudentConfig = RelevanceStudentConfig()
    zero_stage: Literal[0, 1, 2] = Field(0, description="students are small: ZeRO 0-2 keep whole weights per rank")
    promote_to_production_when_none: bool = Field(
        True, description="with no production model yet, a student that passes the gate goes straight to production"
    )


class RLRewardWeights(StrictConfig):
    """How the RL reward terms combine: the gains add, the penalties subtract (all weights >= 0)."""

    feedback: float = Field(1.0, ge=0, description="observed click/cart/purchase reward of served pairs")
    judge: float = Field(1.0, ge=0, description="relevance judge on the products the rewrite retrieves")
    retrieval_gain: float = Field(1.0, ge=0, description="labelled relevant products vs the raw query")
    intent_drift: float = Field(1.0, ge=0, description="penalty below the query-rewrite similarity floor")
    degenerate: float = Field(1.0, ge=0, description="penalty for empty, repetitive or overlong rewrites")


class RLConfig(StrictConfig):
    """Online RL (DPO or GRPO) of the student rewriter from feedback windows and the relevance judge."""

    reward_weights: RLRewardWeights = Field(RLRewardWeights(), description="how the reward terms combine")
    intent_similarity_floor: float = Field(
        0.5, ge=0.0, le=1.0, description="query-rewrite similarity below which the intent-drift penalty applies"
    )
    intent_embedder: Literal["minilm", "ngram_overlap"] = Field(
        "minilm", description="similarity of query and rewrite: MiniLM embeddings or character n-gram overlap"
    )
    max_rewrite_words: int = Field(12, ge=1, description="rewrites longer than this are penalised as degenerate")
    judge_top_k: int = Field(5, ge=1, description="products of the rewrite's results the relevance judge scores")
    trainer: Literal["grpo", "dpo"] = Field(
        "dpo",
        description="dpo: best-vs-worst pairs of each group; grpo: group-standardised advantages "
        "(benchmarks/results/rl_quality*.json: dpo +0.4% [-1.5%, +2.3%], grpo -0.5% [-11.6%, +10.5%] over 3 seeds)",
    )
    num_generations: int = Field(
        8, ge=8, description="distinct candidates per query (the group): raw query, greedy, beams, samples"
    )
    beam_candidates: int = Field(2, ge=0, description="beam-search rewrites seeded into each group")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling of the group's samples")
    min_reward_spread: float = Field(1e-6, ge=0.0, description="groups whose rewards spread less are dropped")
    dpo_beta: float = Field(0.1, gt=0.0, description="DPO: strength of the implicit KL to the reference")
    feedback_reward_scale: float = Field(
        3.0, gt=0.0, description="observed feedback reward r enters as tanh(r / scale), bounded to (-1, 1)"
    )
    queries_per_step: int = Field(2, ge=1, description="queries per RL step")
    max_steps: int = Field(20, ge=1, description="RL steps per retraining run")
    learning_rate: float = Field(2e-5, gt=0.0, description="peak learning rate of the policy")
    beta: float = Field(0.04, ge=0.0, description="grpo: weight of the KL penalty to the reference model")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of the group's sampled rewrites")
    max_new_tokens: int = Field(24, ge=1, description="longest sampled rewrite, in tokens")
    max_train_queries: int = Field(256, ge=1, description="most queries from the feedback windows one run trains on")
    labelled_queries_per_run: int = Field(32, ge=0, description="train-split queries added for retrieval gain")
    min_new_requests: int = Field(20, ge=0, description="fewer new served requests than this: nothing to do")
    max_kl: float = Field(1.0, gt=0.0, description="gate: mean per-token KL to the reference on the replay set")
    max_harm_increase: float = Field(
        0.01, ge=0.0, description="gate: held-out harm rate may exceed production's by at most this share"
    )
    heldout_split: Literal["validation", "test"] = Field(
        "test", description="labelled split the retrained student is evaluated and gated on"
    )
    watermark_key: str = Field(
        "rl/watermark.json", description="S3 key of the newest feedback window already trained on"
    )
    canary_traffic_percent: int = Field(10, ge=1, le=99, description="share of traffic the canary receives")
    canary_min_requests: int = Field(20, ge=1, description="canary requests needed before it can be promoted")
    canary_alpha: float = Field(
        0.05, gt=0.0, lt=0.5, description="promote only when a one-sided paired test of the canary win has p below this"
    )
    kserve_rollout: bool = Field(False, description="canary on the cluster's InferenceService (else replayed traffic)")
    canary_wait_s: float = Field(1800.0, gt=0, description="longest wait for live canary requests")
    canary_poll_s: float = Field(60.0, gt=0, description="seconds between checks of live canary traffic")
    isvc_name: str = Field("student-rewriter", description="KServe InferenceService of the student rewriter")
    namespace: str = Field("minielm", description="namespace of that InferenceService")


class FeedbackConfig(StrictConfig):
    """The shopper simulator and the feedback aggregator (windows on S3, rewards, Feast query stats)."""

    # Aggregator windows: requests collect for window_s, then wait grace_s for their feedback.
    window_s: float = Field(5.0, gt=0, description="seconds a window collects served requests")
    grace_s: float = Field(5.0, ge=0, description="seconds a closed window still accepts feedback")
    unmatched_after_s: float = Field(
        60.0,
        gt=0,
        description="event-time age after which feedback with no served request goes to the late-events table",
    )
    windows_prefix: S3Key = Field("feedback/windows", min_length=1, description="S3 prefix of the reward windows")
    late_prefix: S3Key = Field(
        "feedback/late", min_length=1, description="S3 prefix of late and unmatched feedback events"
    )
    state_prefix: S3Key = Field(
        "feedback/state", min_length=1, description="S3 prefix of the aggregator's restart state"
    )
    # Reward of one served request: weighted engagement minus a penalty when the shopper reformulated.
    click_weight: float = Field(1.0, ge=0, description="reward per click")
    add_to_cart_weight: float = Field(3.0, ge=0, description="reward per add-to-cart")
    purchase_weight: float = Field(5.0, ge=0, description="reward per purchase")
    reformulation_penalty: float = Field(
        2.0, ge=0, description="reward subtracted when the shopper reformulated the query"
    )
    push_to_feast: bool = Field(True, description="push per-query statistics to the Feast online store")
    push_interval_s: float = Field(0.5, gt=0, description="how often query statistics go to Feast")
    s3_retry_initial_s: float = Field(
        0.5, gt=0, description="first back-off after a failed S3 write (doubles up to s3_retry_max_s)"
    )
    s3_retry_max_s: float = Field(
        10.0, gt=0, description="longest back-off between S3 retries, and after a failed Feast push"
    )
    # Observability (minielm.feedback.observability): /metrics, /healthz, /readyz.
    metrics_port: int | None = Field(None, ge=0, lt=65536, description="port of /metrics and the probes; None: off")
    metrics_host: str = Field("127.0.0.1", description="address the metrics port binds (0.0.0.0 in a pod)")
    stall_after_s: float = Field(
        120.0, gt=0, description="liveness fails when the consumer loop has not turned for this long"
    )
    poll_timeout_ms: int = Field(200, ge=1, description="longest wait of one consumer poll")
    max_poll_records: int = Field(5000, ge=1, description="most records one consumer poll returns")
    check_crcs: bool = Field(
        True,
        description="verify record CRCs on consume (librdkafka checks them in C)",
    )
    # Shopper simulator: position-biased clicks on the relevance judge's scores.
    shopper_judge: Literal["attributes", "relevance_teacher"] = Field(
        "attributes",
        description="what judges the shown products for simulated shoppers: catalog attributes of the intended "
        "products, or the relevance teacher; never the relevance student, which is the RL reward judge",
    )
    sim_rate_per_s: float = Field(200.0, gt=0, description="served requests per second the simulator sends")
    sim_top_k: int = Field(10, ge=1, description="results a simulated shopper sees")
    examination_decay: float = Field(1.0, ge=0, description="P(examine rank r) = 1 / (1 + r) ** decay")
    click_floor: float = Field(0.02, ge=0, le=1, description="click probability of an irrelevant examined item")
    add_to_cart_given_click: float = Field(0.4, ge=0, le=1, description="P(add to cart | click) of a simulated shopper")
    purchase_given_cart: float = Field(0.5, ge=0, le=1, description="P(purchase | add to cart) of a simulated shopper")
    satisfied_score: float = Field(
        0.5, ge=0, le=1, description="a click on a product scored at least this satisfies the shopper"
    )
    reformulation_prob: float = Field(0.7, ge=0, le=1, description="P(reformulate | unsatisfied)")


DriftCheckFamily = Literal["embeddings", "descriptors", "outcomes", "rewrites"]


class DriftConfig(StrictConfig):
    """Drift monitoring: which feedback windows are compared, each check's threshold, where results go.

    Scores are "higher means more drift" everywhere, so an alert reads score > threshold.
    """

    # Which windows: a pinned reference (a pointer object listing window keys) wins; otherwise the
    # oldest ``reference_windows`` objects per partition are the reference and the newest
    # ``current_windows`` objects per partition are the current window.
    reference_pointer_key: S3Key = Field(
        "drift/reference.json",
        min_length=1,
        description="S3 key of the pinned reference (a pointer listing window keys)",
    )
    reference_windows: int = Field(4, ge=1, description="oldest window objects per partition used as reference")
    current_windows: int = Field(4, ge=1, description="newest window objects per partition checked for drift")
    min_rows: int = Field(30, ge=1, description="a window with fewer usable rows is 'no data'")
    checks: list[DriftCheckFamily] = Field(
        ["embeddings", "descriptors", "outcomes", "rewrites"], description="check families to run"
    )
    # (a) semantic drift of query embeddings (all-MiniLM-L6-v2): a cheap method, on a row sample.
    embedding_model_path: Path | None = Field(None, description="None: all-MiniLM-L6-v2 from its wheel")
    embedding_sample_size: int = Field(500, ge=20, description="rows per window whose queries are embedded")
    embedding_method: Literal["novelty", "model", "distance", "mmd"] = Field(
        "novelty", description="how query-embedding drift is scored"
    )
    embedding_threshold: float = Field(
        0.08,
        gt=0,
        description="novelty: rise in the share of queries with no "
        "reference query above embedding_similarity_floor; model: ROC AUC of a "
        "reference-vs-current classifier; distance: euclidean distance of the mean "
        "embeddings; mmd: MMD^2",
    )
    embedding_similarity_floor: float = Field(
        0.4, gt=0, lt=1, description="novelty: cosine similarity below which a query has no similar reference query"
    )
    embedding_pca_components: int | None = Field(16, ge=2, description="model/distance/mmd only")
    embedding_batch_size: int = Field(256, ge=1, description="queries per embedding batch")
    embedding_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads while encoding; None: torch's default (1 is faster on an oversubscribed machine)",
    )
    embedding_cache: bool = Field(True, description="keep query vectors in <paths.state_dir>/drift/ across runs")
    # (b) text descriptors of queries and rewrites; (d) rewrite edit distance: distribution distance.
    distribution_method: Literal["wasserstein", "psi", "jensenshannon", "hellinger"] = Field(
        "wasserstein", description="distance between reference and current distributions"
    )
    distribution_threshold: float = Field(0.2, gt=0, description="distance above which a distribution drifted")
    share_tolerance: float = Field(
        0.05,
        gt=0,
        le=1,
        description="max change of a mean share (digits/units, "
        "non-ASCII, out-of-catalog words) before it counts as drift",
    )
    catalog_path: Path | None = Field(
        None,
        description="ESCI products parquet (or its folder) whose words "
        "are the catalog vocabulary; None: the reference window's words",
    )
    # (c) outcomes: absolute change of a rate; reward distribution.
    ctr_tolerance: float = Field(
        0.1, gt=0, le=1, description="most the click-through rate may change before it counts as drift"
    )
    reformulation_tolerance: float = Field(
        0.1, gt=0, le=1, description="most the reformulation rate may change before it counts as drift"
    )
    zero_result_tolerance: float = Field(
        0.1, gt=0, le=1, description="most the zero-result rate may change before it counts as drift"
    )
    reward_threshold: float = Field(0.3, gt=0, description="distribution distance of the per-request reward")
    # (d) rewrite behaviour.
    identical_rewrite_tolerance: float = Field(
        0.15, gt=0, le=1, description="max change of the share of rewrites identical to their query"
    )
    # Outputs and alerts.
    reports_prefix: S3Key = Field(
        "drift/reports", min_length=1, description="S3 prefix of the HTML reports and test results"
    )
    upload_report: bool = Field(True, description="upload the report to S3 (else only the local copy)")
    report_base_url: OptionalHttpUrl = Field(
        None, description="URL under which reports_prefix is browsable; None: links are s3:// URIs"
    )
    runbook_url: str = Field("docs/runbook.md", description="runbook the alerts link to (one section per check family)")
    pushgateway_url: OptionalHttpUrl = Field(
        None, description="Prometheus Pushgateway the drift metrics go to; None: not pushed"
    )
    pushgateway_job: str = Field("minielm-drift", description="job label of the pushed drift metrics")
    webhook_url: OptionalHttpUrl = Field(None, description="Alertmanager-compatible webhook receiver")
    webhook_timeout_s: float = Field(5.0, gt=0, description="timeout of one webhook call")
    silenced_checks: list[str] = Field(
        [],
        description="checks still computed and reported but that neither "
        "alert nor trigger retraining (a known false alarm)",
    )
    # Drift-triggered retraining (the rl_retraining pipeline).
    trigger_retraining: bool = Field(False, description="submit the RL retraining pipeline when drift is found")
    retraining_checks: list[str] = Field([], description="checks whose drift triggers retraining; empty: any")

    @field_validator("checks")
    @classmethod
    def _some_checks(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one of embeddings, descriptors, outcomes, rewrites")
        return list(dict.fromkeys(value))


class Settings(StrictConfig):
    paths: PathsConfig = PathsConfig()
    kafka: KafkaConfig = KafkaConfig()
    s3: S3Config = S3Config()
    services: ServicesConfig = ServicesConfig()
    feast: FeastConfig = FeastConfig()
    models: ModelNames = ModelNames()
    serving: ServingConfig = ServingConfig()
    rewrite_cache: RewriteCacheConfig = RewriteCacheConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    distill: DistillConfig = DistillConfig()
    pipelines: PipelinesConfig = PipelinesConfig()
    rl: RLConfig = RLConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    drift: DriftConfig = DriftConfig()
    teachers: TeachersConfig = TeachersConfig()
    seed: int = Field(0, description="seed of every random choice (data generation, sampling, training)")

    def public_dict(self) -> dict[str, Any]:
        """All settings as JSON-able data, secrets masked."""
        return json.loads(self.model_dump_json())


def _nested(dotted: str, value: Any, sep: str = ".") -> dict[str, Any]:
    parts = [p for p in dotted.split(sep) if p]
    if not parts:
        raise ConfigError(f"empty setting name in {dotted!r}")
    tree: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        tree = {part: tree}
    return tree


def _parse_scalar(raw: str) -> Any:
    """Parse an env/CLI value the way YAML would ("2" -> 2, "true" -> True, "[a, b]" -> list)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX) and key != CONFIG_ENV and "__" in key:
            dotted = key[len(ENV_PREFIX) :].lower()
            layer = deep_merge(layer, _nested(dotted, _parse_scalar(raw), sep="__"))
    # The AWS SDK's own variables are honoured for the S3 credentials.
    for field, env_key in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
        if env_key in environ and field not in layer.get("s3", {}):
            layer = deep_merge(layer, {"s3": {field: environ[env_key]}})
    return layer


def _cli_overrides(assignments: list[str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        layer = deep_merge(layer, _nested(key.strip(), _parse_scalar(raw)))
    return layer


def _yaml_layer(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data


def services_state_path(state_dir: Path) -> Path:
    return Path(state_dir) / SERVICES_STATE_FILE


def _services_layer(state_dir: Path) -> dict[str, Any]:
    """Endpoints and credentials of the embedded services, if ``minielm services up`` wrote them."""
    path = services_state_path(state_dir)
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get("settings", {})


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "<root>"
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{field}: {item['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(
    config_file: Path | str | None = None,
    overrides: list[str] | None = None,
    environ: dict[str, str] | None = None,
    use_services_state: bool = True,
) -> Settings:
    """Build the settings from every layer; raises ConfigError naming each bad field."""
    environ = dict(os.environ if environ is None else environ)
    config_file = config_file or environ.get(CONFIG_ENV)
    layers: list[dict[str, Any]] = []
    file_layer = _yaml_layer(Path(config_file)) if config_file else {}
    env_layer = _env_overrides(environ)
    cli_layer = _cli_overrides(overrides or [])
    if use_services_state:
        # The state dir itself may be set by any later layer.
        probe = deep_merge(deep_merge(file_layer, env_layer), cli_layer)
        state_dir = probe.get("paths", {}).get("state_dir", PathsConfig().state_dir)
        layers.append(_services_layer(Path(state_dir)))
    layers += [file_layer, env_layer, cli_layer]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
