"""The feedback aggregator against the real embedded Kafka (Tansu) and S3 (SeaweedFS): crash, bad input,
broker restart and S3 outage, each checked by counting every produced event in the S3 objects."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from minielm.feedback.aggregator import Aggregator
from minielm.feedback.events import MAX_EVENT_BYTES, DeadLetter
from minielm.kafka_io import make_consumer, make_producer
from minielm.storage import ObjectStore
from tests.integration.feedback_support import (
    CountedStream,
    count_per_request,
    create_topics,
    isolated_settings,
    landed,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


def assert_exactly_once(stream: CountedStream, windows, late) -> None:
    """Every produced request is one window row, every feedback event is counted exactly once."""
    duplicated = windows["request_id"][windows["request_id"].duplicated()].tolist()
    assert not duplicated, f"requests in more than one window: {duplicated[:5]}"
    assert set(windows["request_id"]) == set(stream.expected), (
        f"missing {sorted(set(stream.expected) - set(windows['request_id']))[:5]}, "
        f"unexpected {sorted(set(windows['request_id']) - set(stream.expected))[:5]}"
    )
    counted = count_per_request(windows, late)
    wrong = []
    for rid, expected in stream.expected.items():
        got = counted[rid]
        if got["_events"] + got["_late"] != sum(expected.values()):
            wrong.append((rid, dict(expected), dict(got)))
        elif not got["_late"] and any(
            got[k] != expected[k] for k in ("impression", "click", "add_to_cart", "purchase")
        ):
            wrong.append((rid, dict(expected), dict(got)))
    assert not wrong, f"{len(wrong)} requests with wrong feedback counts, e.g. {wrong[:3]}"


def all_accounted(stream: CountedStream, store, settings) -> bool:
    """Every produced request has its window row and every feedback event is in a row or the late table."""
    windows, late, _ = landed(store, settings)
    produced = sum(sum(c.values()) for c in stream.expected.values())
    return (
        set(windows["request_id"]) >= set(stream.expected)
        and int(windows["feedback_events"].sum()) + len(late) >= produced
    )


def run_in_thread(aggregator: Aggregator, **kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["stats"] = aggregator.run(**kwargs)
        except BaseException as error:  # surfaced by the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def start_aggregator_process(config: Path, group: str, log_path: Path) -> subprocess.Popen:
    log_file = open(log_path, "ab")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "minielm"),
            "--config",
            str(config),
            "feedback",
            "aggregate",
            "--group",
            group,
            "--no-feast",
        ],
        cwd=REPO_ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MINIELM_CONFIG": ""},
    )
    log_file.close()
    return process


# -- (a) kill -9 mid-stream -----------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(embedded_services, tmp_path):
    settings = isolated_settings(embedded_services, window_s=0.7, grace_s=0.3)
    store = ObjectStore(settings.s3)
    config = write_config(settings, tmp_path / "aggregator.yaml")
    group = settings.kafka.consumer_group
    stream = CountedStream(settings)
    first = start_aggregator_process(config, group, tmp_path / "aggregator-1.log")
    flowing = threading.Event()
    flowing.set()

    def produce() -> None:
        chunk = 0
        while flowing.is_set():
            stream.send(chunk * 200, 200, rate_per_s=800)
            chunk += 1

    producer = threading.Thread(target=produce, daemon=True)
    try:
        producer.start()
        wait_for(lambda: len(landed(store, settings)[2]) >= 2, 90, what="the first windows on S3")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        windows_at_kill = len(landed(store, settings)[2])
        second = start_aggregator_process(config, group, tmp_path / "aggregator-2.log")
        time.sleep(3.0)  # the stream keeps flowing while the replacement starts and catches up
        flowing.clear()
        producer.join(60)
        wait_for(lambda: all_accounted(stream, store, settings), 90, what="every produced event on S3")
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, (tmp_path / "aggregator-2.log").read_text()[-3000:]
    finally:
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.kill()
        stream.close()
    windows, late, keys = landed(store, settings)
    assert windows_at_kill >= 2 and len(keys) > windows_at_kill
    assert_exactly_once(stream, windows, late)
    produced_feedback = sum(sum(c.values()) for c in stream.expected.values())
    print(
        f"\nkill -9: {len(stream.expected)} requests, {produced_feedback} feedback events, {len(keys)} windows "
        f"({windows_at_kill} before the kill), {len(late)} late; each request in exactly one window, "
        f"{int(windows['feedback_events'].sum()) + len(late)} feedback events counted"
    )


# -- (b) malformed events --------------------------------------------------------------------------
def malformed_corpus() -> list[tuple[str, bytes, str]]:
    """(topic kind, bytes, expected error_kind) for every way an event can be bad."""
    good_click = {
        "schema_version": 1,
        "event_type": "click",
        "request_id": "bad-1",
        "query": "q",
        "product_id": "p",
        "position": 0,
        "ts": 1.7e9,
    }
    served = {
        "schema_version": 1,
        "event_type": "served_rewrite",
        "request_id": "bad-2",
        "query": "q",
        "rewrite": "w",
        "model_name": "m",
        "model_version": "1",
        "product_ids": [],
        "ts": 1.7e9,
    }

    def edited(base: dict, **changes) -> bytes:
        record = {**base, **changes}
        return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()

    return [
        ("feedback", b"{this is not json", "invalid_json"),
        ("feedback", b"\x00\x01\x02\xff", "invalid_json"),
        ("feedback", b'"just a string"', "not_an_object"),
        ("feedback", edited(good_click, request_id=...), "invalid_fields"),
        ("feedback", edited(good_click, ts=...), "invalid_fields"),
        ("feedback", edited(good_click, position="first"), "invalid_fields"),
        ("feedback", edited(good_click, ts="yesterday"), "invalid_fields"),
        ("feedback", edited(good_click, product_id=None), "invalid_fields"),
        ("feedback", edited(good_click, schema_version=7), "unknown_version"),
        ("feedback", edited(good_click, comment="x" * (MAX_EVENT_BYTES + 10)), "too_large"),
        ("feedback", edited(served), "wrong_topic"),
        ("rewrites", edited(served, product_ids="p1,p2"), "invalid_fields"),
        ("rewrites", edited(served, schema_version=2), "unknown_version"),
        ("rewrites", edited(served, model_version=...), "invalid_fields"),
        ("rewrites", b"[]", "not_an_object"),
        ("rewrites", b"y" * 300_000, "too_large"),
        ("rewrites", edited(good_click), "wrong_topic"),
    ]


def test_malformed_events_land_in_the_dead_letter_topic_and_the_consumer_keeps_going(embedded_services):
    settings = isolated_settings(embedded_services, window_s=0.5, grace_s=0.2)
    store = ObjectStore(settings.s3)
    topics = settings.kafka.topics
    corpus = malformed_corpus()
    stream = CountedStream(settings)
    producer = make_producer(settings.kafka)
    stream.send(0, 50, prefix="before")
    for kind, value, _ in corpus:
        producer.send(topics.feedback if kind == "feedback" else topics.rewrites, key=b"bad", value=value)
    producer.flush()
    stream.send(50, 50, prefix="after")
    stream.close()
    aggregator = Aggregator(settings, store=store)
    stats = aggregator.run(until_idle_s=2.0, max_seconds=60)
    producer.close()

    assert stats.dead_letters == len(corpus)
    dlq = make_consumer(settings.kafka, topics.dead_letter, group_id=None, consumer_timeout_ms=3000)
    letters = [DeadLetter.from_bytes(record.value) for record in dlq]
    dlq.close()
    assert len(letters) == len(corpus)
    by_original = {letter.original: letter for letter in letters}
    for kind, value, error_kind in corpus:
        letter = by_original[value]
        assert letter.error_kind == error_kind, (value[:80], letter.reason)
        assert letter.reason and letter.source_offset is not None
        assert letter.source_topic == (topics.feedback if kind == "feedback" else topics.rewrites)
    windows, late, _ = landed(store, settings)
    assert_exactly_once(stream, windows, late)
    print(
        f"\nmalformed: {len(corpus)} bad events -> {len(letters)} dead letters with reasons "
        f"{dict(Counter(letter.error_kind for letter in letters))}; {len(windows)} valid requests all in windows"
    )


# -- (c) broker restarted under the consumer -------------------------------------------------------
@pytest.mark.slow
def test_broker_restart_under_the_consumer_reconnects_and_consumes_new_events(embedded_services):
    from minielm.services import free_port, kafka_healthy, tansu_binary

    host = embedded_services.services.host
    port = free_port(host)
    url = f"tcp://{host}:{port}"

    def start_broker() -> subprocess.Popen:
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: kafka_healthy(f"{host}:{port}"), 30, 0.3, what="the separate broker")
        return process

    live = embedded_services.model_copy(deep=True)
    live.kafka.bootstrap_servers = f"{host}:{port}"
    broker = start_broker()
    try:
        settings = isolated_settings(live, window_s=0.5, grace_s=0.2)
        store = ObjectStore(settings.s3)
        aggregator = Aggregator(settings, store=store)
        thread, outcome = run_in_thread(aggregator, max_seconds=120)
        wait_for(lambda: aggregator.joins, 30, 0.2, what="the partitions to be assigned")
        broker.kill()
        broker.wait(10)
        time.sleep(3.0)  # the consumer sees the broker gone
        broker = start_broker()
        create_topics(settings)  # the memory-only broker lost its topics
        stream = CountedStream(settings)
        stream.send(0, 300, prefix="after-restart")
        stream.close()
        wait_for(
            lambda: all_accounted(stream, store, settings),
            60,
            what="the events produced after the broker restart in windows",
        )
        wait_for(lambda: aggregator.stats.commits >= 2, 30, 0.2, what="offsets committed on the restarted broker")
        aggregator.stop()
        thread.join(60)
        assert "error" not in outcome, outcome.get("error")
        windows, late, _ = landed(store, settings)
        assert_exactly_once(stream, windows, late)
        print(
            f"\nbroker restart: consumer rejoined and wrote all {len(windows)} new requests "
            f"({outcome['stats'].commits} commits)"
        )
    finally:
        broker.kill()
        broker.wait(10)


# -- (d) S3 unavailable for a while ------------------------------------------------------------------
class SwitchableProxy:
    """A TCP forwarder to the real S3 server that can be cut off (connections refused) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        from minielm.services import free_port

        self.port = free_port("127.0.0.1")
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()

    def up(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        self._stop.clear()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
            self._server = None
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
        self._sockets.clear()

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass


@pytest.mark.slow
def test_s3_outage_retries_with_backoff_without_committing_and_loses_nothing(embedded_services):
    from urllib.parse import urlparse

    real = urlparse(embedded_services.s3.endpoint_url)
    proxy = SwitchableProxy((real.hostname, real.port))
    proxy.up()
    settings = isolated_settings(
        embedded_services, window_s=0.5, grace_s=0.2, s3_retry_initial_s=0.2, s3_retry_max_s=1.0
    )
    settings.s3.endpoint_url = f"http://127.0.0.1:{proxy.port}"
    store = ObjectStore(settings.s3)
    check_store = ObjectStore(embedded_services.s3)
    stream = CountedStream(settings)
    aggregator = Aggregator(settings, store=store)
    thread, outcome = run_in_thread(aggregator, max_seconds=120)
    try:
        stream.send(0, 200, prefix="before-outage")
        wait_for(lambda: all_accounted(stream, check_store, settings), 60, what="the first windows")
        commits_before = aggregator.stats.commits
        proxy.down()
        stream.send(200, 400, prefix="during-outage")
        wait_for(lambda: aggregator.stats.s3_failures >= 3, 30, 0.2, what="failed S3 writes")
        time.sleep(2.0)
        assert aggregator.stats.commits == commits_before, "committed while S3 was down"
        missing = set(stream.expected) - set(landed(check_store, settings)[0]["request_id"])
        assert missing, "events produced during the outage cannot be on S3 yet"
        proxy.up()
        wait_for(
            lambda: all_accounted(stream, check_store, settings), 60, what="the events of the outage once S3 is back"
        )
        aggregator.stop()
        thread.join(60)
    finally:
        aggregator.stop()
        proxy.down()
        stream.close()
    assert "error" not in outcome, outcome.get("error")
    windows, late, _ = landed(check_store, settings)
    assert_exactly_once(stream, windows, late)
    stats = outcome["stats"]
    assert stats.commits > commits_before
    print(
        f"\ns3 outage: {stats.s3_failures} failed writes retried with backoff, no commit during the outage, "
        f"all {len(windows)} requests in windows exactly once"
    )
