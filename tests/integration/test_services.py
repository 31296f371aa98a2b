"""The embedded-services manager against the real Tansu and SeaweedFS binaries."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from minielm.config import load_settings
from minielm.services import START_ATTEMPTS, EmbeddedServices, PortTaken, ServicesError, kafka_healthy
from minielm.storage import ObjectStore

pytestmark = pytest.mark.integration


def _settings(state_dir, *overrides):
    return load_settings(overrides=[f"paths.state_dir={state_dir}", *overrides], environ={})


def test_session_services_are_healthy_and_provisioned(embedded_services):
    from kafka.admin import KafkaAdminClient

    services = EmbeddedServices(embedded_services)
    assert [s.healthy for s in services.status()] == [True, True]
    admin = KafkaAdminClient(bootstrap_servers=embedded_services.kafka.bootstrap_servers)
    try:
        assert set(embedded_services.kafka.topics.all()) <= set(admin.list_topics())
    finally:
        admin.close()
    assert ObjectStore(embedded_services.s3).client.head_bucket(Bucket=embedded_services.s3.bucket)


def test_later_commands_pick_up_the_endpoints(embedded_services):
    reloaded = load_settings(overrides=[f"paths.state_dir={embedded_services.paths.state_dir}"], environ={})
    assert reloaded.kafka.bootstrap_servers == embedded_services.kafka.bootstrap_servers
    assert reloaded.s3.endpoint_url == embedded_services.s3.endpoint_url
    assert reloaded.s3.access_key_id.get_secret_value() == embedded_services.s3.access_key_id.get_secret_value()


def test_starting_twice_is_refused(embedded_services):
    with pytest.raises(ServicesError, match="already running"):
        EmbeddedServices(embedded_services).start()


def test_port_in_use_is_reported(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServicesError, match=f"services.kafka_port={port}.*already in use"):
            EmbeddedServices(_settings(tmp_path, f"services.kafka_port={port}")).start()


def test_missing_binary_is_reported(tmp_path, monkeypatch):
    import minielm.services as services_module

    monkeypatch.setattr(services_module.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServicesError, match="weed"):
        EmbeddedServices(_settings(tmp_path)).start()


def test_restart_after_kill_9_keeps_s3_data(tmp_path):
    settings = _settings(tmp_path / "state")
    services = EmbeddedServices(settings, data_dir=tmp_path / "data")
    live = services.start()
    try:
        ObjectStore(live.s3).put_json("survives/kill.json", {"value": 42})
        state = services.read_state()
        for pid in state["pids"].values():
            os.killpg(pid, signal.SIGKILL)
        for pid in state["pids"].values():
            os.waitpid(pid, 0)
        assert [s.running for s in services.status()] == [False, False]
        live = services.start()  # stale state with dead pids: starts again on the same data dir
        assert ObjectStore(live.s3).get_json("survives/kill.json") == {"value": 42}
        assert kafka_healthy(live.kafka.bootstrap_servers)
    finally:
        services.stop()
    assert services.read_state() is None


def _volume_port_taken(monkeypatch, taken_port: int, attempts_taken: int) -> None:
    """Hand SeaweedFS's volume server (the 4th port a start picks) a port another process holds, in the first
    ``attempts_taken`` starts: what happens when a picked free port is taken before the server binds it."""
    import minielm.services as services_module

    real_free_port = services_module.free_port
    calls = []

    def racing_free_port(host, also_free_offsets=()):
        calls.append(also_free_offsets)
        if len(calls) % 5 == 4 and len(calls) <= 5 * attempts_taken:
            return taken_port
        return real_free_port(host, also_free_offsets)

    monkeypatch.setattr(services_module, "free_port", racing_free_port)


def _held_volume_port() -> socket.socket:
    """A listening socket on a port SeaweedFS could be given for its volume server: its gRPC port, 10000
    higher, must still be a valid port (the OS hands out ports up to 60999)."""
    for _ in range(200):
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        if held.getsockname()[1] + 10000 < 65536:
            held.listen()
            return held
        held.close()
    raise RuntimeError("no port below 55536 to hold")


def test_a_port_taken_before_the_server_binds_it_starts_again_on_fresh_ports(tmp_path, monkeypatch):
    with _held_volume_port() as taken:
        port = taken.getsockname()[1]
        _volume_port_taken(monkeypatch, port, attempts_taken=1)
        services = EmbeddedServices(_settings(tmp_path / "state"), data_dir=tmp_path / "data")
        live = services.start()
        try:
            assert [s.healthy for s in EmbeddedServices(live).status()] == [True, True]
            ObjectStore(live.s3).put_json("after/retry.json", {"value": 1})
            assert ObjectStore(live.s3).get_json("after/retry.json") == {"value": 1}
        finally:
            services.stop()
    log = (tmp_path / "state" / "logs" / "seaweedfs.log").read_text()
    assert f"127.0.0.1:{port}: bind: address already in use" in log


def test_a_port_taken_at_every_attempt_is_reported(tmp_path, monkeypatch):
    with _held_volume_port() as taken:
        port = taken.getsockname()[1]
        _volume_port_taken(monkeypatch, port, attempts_taken=START_ATTEMPTS)
        services = EmbeddedServices(_settings(tmp_path / "state"), data_dir=tmp_path / "data")
        with pytest.raises(PortTaken, match=f"s3 server exited during start: .*127.0.0.1:{port}.*already in use"):
            services.start()
    assert services.read_state() is None  # nothing left running or recorded
