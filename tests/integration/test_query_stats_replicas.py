"""Feast query statistics at any replica count, against the real embedded Kafka (Tansu), S3 (SeaweedFS)
and a local Feast store: two aggregator members, one of them killed with SIGKILL and restarted, push the
very values that one member pushes over the same events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from minielm.features.keys import query_key
from minielm.features.repo import QUERY_STATS_COLUMNS, QUERY_STATS_VIEW, apply_repo, feature_store
from minielm.feedback.aggregator import Aggregator
from minielm.feedback.query_stats import FeastQueryStatsSink
from minielm.storage import ObjectStore
from tests.integration.feedback_support import CountedStream, isolated_settings, wait_for, write_config
from tests.integration.test_feedback_aggregator import REPO_ROOT, all_accounted

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QUERIES = [f"query {i}" for i in range(37)]  # what CountedStream sends
FEATURES = [column for column in QUERY_STATS_COLUMNS if column != "query_key"]


def run_settings(base, name: str, tmp_path):
    """The same topics, another consumer group, its own S3 prefixes and its own applied Feast repo."""
    settings = base.model_copy(deep=True)
    settings.kafka.consumer_group = f"{base.kafka.consumer_group}-{name}"
    for field in ("windows_prefix", "late_prefix", "state_prefix"):
        setattr(settings.feedback, field, f"{getattr(base.feedback, field)}-{name}")
    settings.feedback.push_to_feast = True
    settings.feast.repo_path = tmp_path / f"feature_repo-{name}"
    apply_repo(settings)
    return settings


def online_values(settings) -> dict[str, dict]:
    rows = [{"query_key": query_key(q)} for q in QUERIES]
    values = (
        feature_store(settings)
        .get_online_features(features=[f"{QUERY_STATS_VIEW}:{f}" for f in FEATURES], entity_rows=rows)
        .to_dict()
    )
    return {row["query_key"]: {f: values[f][i] for f in FEATURES} for i, row in enumerate(rows)}


def start_member(config: Path, group: str, log_path: Path) -> subprocess.Popen:
    """``minielm feedback aggregate`` pushing to Feast, as a Deployment's pod runs it."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "minielm"), "--config", str(config), "feedback", "aggregate"]
            + ["--group", group],
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MINIELM_CONFIG": ""},
        )


def logged(log_path: Path, *lines: str) -> bool:
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    return all(line in text for line in lines)


def test_two_members_and_a_kill_9_restart_push_the_values_of_one_member(embedded_services, tmp_path):
    base = isolated_settings(embedded_services, window_s=0.7, grace_s=0.3)
    store = ObjectStore(base.s3)
    multi = run_settings(base, "two", tmp_path)
    config = write_config(multi, tmp_path / "aggregator.yaml")
    group = multi.kafka.consumer_group
    stream = CountedStream(base)
    flowing = threading.Event()
    flowing.set()

    def produce() -> None:
        chunk = 0
        while flowing.is_set():
            stream.send(chunk * 100, 100, rate_per_s=200)
            chunk += 1

    logs = [tmp_path / f"member-{n}.log" for n in ("a", "b", "a2")]
    members = []
    producer = threading.Thread(target=produce, daemon=True)
    try:
        members.append(start_member(config, group, logs[0]))
        members.append(start_member(config, group, logs[1]))
        producer.start()
        # Both members cut windows of their own partitions, then one dies with work uncommitted.
        wait_for(lambda: logged(logs[0], "window cut") and logged(logs[1], "window cut"), 180, what="both cutting")
        members[0].send_signal(signal.SIGKILL)
        members[0].wait(10)
        members.append(start_member(config, group, logs[2]))
        # The stream keeps flowing until the replacement owns a partition again and cuts its windows.
        wait_for(lambda: logged(logs[2], "partition assigned", "window cut"), 180, what="the replacement cutting")
        flowing.clear()
        producer.join(60)
        wait_for(lambda: all_accounted(stream, store, multi), 120, what="every produced event on S3")
        for member in members[1:]:
            member.send_signal(signal.SIGTERM)
        for member, log_path in zip(members[1:], logs[1:]):
            assert member.wait(90) == 0, log_path.read_text()[-3000:]
    finally:
        flowing.clear()
        for member in members:
            if member.poll() is None:
                member.kill()
        stream.close()
    two_members = online_values(multi)

    single = run_settings(base, "one", tmp_path)
    stats = Aggregator(single, store=store, sink=FeastQueryStatsSink(single)).run(until_idle_s=3.0, max_seconds=180)
    assert stats.served == len(stream.expected)
    one_member = online_values(single)

    volumes = Counter(query_key(f"query {int(rid.rsplit('-', 1)[1]) % 37}") for rid in stream.expected)
    assert {key: row["volume"] for key, row in one_member.items()} == dict(volumes)
    different = {key: (one_member[key], two_members[key]) for key in one_member if one_member[key] != two_members[key]}
    assert not different, f"{len(different)} of {len(one_member)} queries differ, e.g. {next(iter(different.items()))}"
