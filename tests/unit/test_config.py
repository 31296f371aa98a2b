"""The typed settings: layering order and errors that name the field."""

from __future__ import annotations

import json

import pytest

from minielm.config import ConfigError, load_settings


def test_defaults_load_without_any_layer(tmp_path):
    settings = load_settings(environ={}, overrides=[f"paths.state_dir={tmp_path}"])
    assert settings.kafka.topics.rewrites == "minielm.rewrites"
    assert settings.s3.access_key_id is None


def test_layers_apply_in_order_file_env_cli(tmp_path):
    config_file = tmp_path / "minielm.yaml"
    config_file.write_text("kafka:\n  partitions: 3\n  consumer_group: from-file\nserving:\n  http_port: 9000\n")
    environ = {"MINIELM_KAFKA__PARTITIONS": "5", "MINIELM_PATHS__STATE_DIR": str(tmp_path)}
    settings = load_settings(config_file, ["kafka.partitions=7"], environ=environ)
    assert settings.kafka.partitions == 7  # CLI beats env beats file
    assert settings.kafka.consumer_group == "from-file"
    assert settings.serving.http_port == 9000


def test_config_file_from_environment_variable(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("s3:\n  bucket: other-bucket\n")
    settings = load_settings(environ={"MINIELM_CONFIG": str(config_file), "MINIELM_PATHS__STATE_DIR": str(tmp_path)})
    assert settings.s3.bucket == "other-bucket"


def test_services_state_supplies_endpoints_and_credentials(tmp_path):
    (tmp_path / "services.json").write_text(
        json.dumps(
            {
                "settings": {
                    "kafka": {"bootstrap_servers": "127.0.0.1:4242"},
                    "s3": {
                        "endpoint_url": "http://127.0.0.1:4343",
                        "access_key_id": "k",
                        "secret_access_key": "very-secret-value",
                    },
                }
            }
        )
    )
    settings = load_settings(environ={"MINIELM_PATHS__STATE_DIR": str(tmp_path)})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:4242"
    assert settings.s3.secret_access_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in settings.model_dump_json()  # secrets are masked when shown


def test_aws_environment_credentials_are_used(tmp_path):
    settings = load_settings(
        environ={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "shh", "MINIELM_PATHS__STATE_DIR": str(tmp_path)}
    )
    assert settings.s3.access_key_id.get_secret_value() == "AKIA"


@pytest.mark.parametrize(
    "override, field",
    [
        ("kafka.partitions=0", "kafka.partitions"),
        ("kafka.bootstrap_servers=nohostport", "kafka.bootstrap_servers"),
        ("s3.endpoint_url=ftp://x", "s3.endpoint_url"),
        ("s3.bucket=Bad_Bucket", "s3.bucket"),
        ("serving.http_port=70000", "serving.http_port"),
        ("serving.model_stage=staging", "serving.model_stage"),
        ("kafka.typo_field=1", "kafka.typo_field"),
        ("pipelines.rl_retraining_cron=* * *", "pipelines.rl_retraining_cron"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError) as error:
        load_settings(overrides=[override, f"paths.state_dir={tmp_path}"], environ={})
    assert field in str(error.value)


def test_bad_env_value_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="kafka.session_timeout_ms"):
        load_settings(environ={"MINIELM_KAFKA__SESSION_TIMEOUT_MS": "fast", "MINIELM_PATHS__STATE_DIR": str(tmp_path)})


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_set_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="section.field=value"):
        load_settings(overrides=["kafka.partitions"], environ={})


def _leaf_fields(model, prefix=""):
    """(dotted name, field) of every setting below ``model`` (the rows of docs/install.md's values table)."""
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        nested = [t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(t, type)]
        sections = [t for t in nested if issubclass(t, BaseModel)]
        if sections:
            yield from _leaf_fields(sections[0], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def test_every_setting_has_a_description():
    """Descriptions flow into the chart's values schema and the install table: no blank rows."""
    from minielm.config import Settings

    fields = dict(_leaf_fields(Settings))
    assert len(fields) > 200 and "teachers.rewriter.training.max_steps" in fields
    assert [name for name, field in fields.items() if not (field.description or "").strip()] == []


def test_nested_distill_sections_layer_like_every_other_setting(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("distill:\n  rewriter:\n    steps: 11\n  relevance:\n    max_ndcg_gap: 0.1\n")
    environ = {"MINIELM_DISTILL__REWRITER__STEPS": "12"}
    settings = load_settings(config_file, ["distill.relevance.steps=13"], environ=environ, use_services_state=False)
    assert settings.distill.rewriter.steps == 12 and settings.distill.relevance.steps == 13
    assert settings.distill.relevance.max_ndcg_gap == 0.1 and settings.distill.rewriter.batch_size == 16
    with pytest.raises(ConfigError, match="distill.rewriter_steps"):
        load_settings(overrides=["distill.rewriter_steps=5"], environ={}, use_services_state=False)
