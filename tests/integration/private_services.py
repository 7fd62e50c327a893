"""Private Kafka and Redis processes for fault tests, and the helpers those tests share.

The shared test services (scripts/services.sh) serve every engineer's tests, so a
test that stops, kills or deletes something must do it to services of its own:

- :class:`PrivateKafka` is a single-node KRaft broker (broker + controller) run from
  the same jars as the shared one, formatted once in its own directory, on free
  ports. ``stop()`` ends it (SIGTERM, or SIGKILL for a crash) and ``start()`` runs it
  again on the same ports and the same log directories, so topics, records and
  committed offsets survive.
- :class:`PrivateRedis` is a ``redis-server`` without persistence on a free port:
  ``kill()`` is SIGKILL, ``start()`` brings it back empty on the same port.

Both are plain child processes owned by the test process; ``close()`` (called in
``finally``) kills whatever is still running. Every wait has a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from kafka.admin import KafkaAdminClient

from ..support.files import tail
from ..support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.1.1"
LOG4J_CONFIG = ROOT / "scripts" / "kafka" / "log4j2.xml"


# -- time limits -----------------------------------------------------------------------


class TimeLimitExceeded(AssertionError):
    """Raised in the test's main thread when its whole-test time limit passes."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Bound the body's wall time: SIGALRM raises TimeLimitExceeded after ``seconds``.

    The exception interrupts blocking waits (sleeps, ``Popen.wait``, socket reads),
    so the caller's ``finally`` blocks still clean up. Main thread only.
    """

    def expire(signum: int, frame: types.FrameType | None) -> None:
        raise TimeLimitExceeded(f"the test ran past its limit of {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- availability ----------------------------------------------------------------------


def kafka_lib() -> Path:
    """Where scripts/services.sh keeps Kafka's jars (same variables, same default)."""
    cache = os.environ.get("PUSHTRIO_KAFKA_CACHE")
    if cache:
        return Path(cache) / "lib"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pushtrio" / f"kafka-{KAFKA_VERSION}" / "lib"


def missing_tools() -> list[str]:
    """What the private services need and this machine lacks (empty when all is there)."""
    missing = [tool for tool in ("java", "redis-server") if shutil.which(tool) is None]
    if not (kafka_lib() / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        missing.append(f"Kafka jars in {kafka_lib()} (run scripts/services.sh start once)")
    return missing


def _two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


# -- Kafka -----------------------------------------------------------------------------


class PrivateKafka:
    """A single-node KRaft broker of this test module's own; see the module docstring."""

    def __init__(self, directory: Path, lib: Path | None = None) -> None:
        self.directory = directory
        self.lib = lib or kafka_lib()
        self.port, self.controller_port = _two_free_ports()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout: Any = None
        directory.mkdir(parents=True, exist_ok=True)
        self.properties = directory / "server.properties"
        self.server_log = directory / "server.log"
        self._write_properties()
        self._format()

    def _write_properties(self) -> None:
        # As write_kafka_properties in scripts/services.sh, but for two differences.
        # No auto-creation of topics: a consumer asks for it in every metadata
        # request, so a deleted topic would silently come back with one partition.
        # A shorter broker session: after a SIGKILL the restarted broker cannot
        # register until its old registration expires (9 s by default).
        ctrl = f"127.0.0.1:{self.controller_port}"
        self.properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={ctrl}",
                    f"listeners=PLAINTEXT://{self.bootstrap},CONTROLLER://{ctrl}",
                    f"advertised.listeners=PLAINTEXT://{self.bootstrap},CONTROLLER://{ctrl}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.directory / 'data'}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "delete.topic.enable=true",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=2",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=2",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "share.coordinator.state.topic.num.partitions=2",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "broker.session.timeout.ms=3000",
                    "broker.heartbeat.interval.ms=1000",
                    "",
                ]
            )
        )

    def _java(self, *args: str, heap: str) -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.directory}",
            "-cp",
            f"{self.lib}/*",
            *args,
        ]

    def _format(self) -> None:
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties),
            "--standalone",
            heap="256m",
        )
        result = subprocess.run(command, capture_output=True, timeout=60, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"formatting the private Kafka failed:\n{output[-3000:]}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 60.0) -> float:
        """Run the broker on its data; return the monotonic time at which it answered.

        Raises AssertionError (with the end of its log) if it exits or does not
        answer a client within ``timeout_s``.
        """
        assert not self.running, "the private broker is already running"
        self._stdout = open(self.directory / "stdout.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self._java("-Xms128m", "kafka.Kafka", str(self.properties), heap="512m"),
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
        )
        # scripts/wait_kafka.py, the shared broker's readiness check, in a process of
        # its own: kafka-python clients that fail to bootstrap leak sockets, which
        # would surface here as ResourceWarnings (errors under filterwarnings).
        probe = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "wait_kafka.py"),
                self.bootstrap,
                "--timeout",
                str(timeout_s),
                "--pid",
                str(self.proc.pid),
                "--quiet",
            ],
            capture_output=True,
            timeout=timeout_s + 30,
            check=False,
        )
        if probe.returncode == 0:
            return time.monotonic()
        raise AssertionError(
            f"private Kafka on {self.bootstrap} not ready: {probe.stderr.decode()[-500:]}; "
            f"exit status {self.proc.poll()}\n{tail(self.server_log)}"
        )

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 30.0) -> float:
        """Send ``signum`` and wait for the broker to exit (SIGKILL after ``timeout_s``).

        Returns the monotonic time at which it had exited.
        """
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        return time.monotonic()

    def close(self) -> None:
        self.stop(signal.SIGKILL)

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="pushtrio-fault-tests",
            request_timeout_ms=20_000,
            bootstrap_timeout_ms=20_000,
        )

    def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` with its dead-letter topic (there is no auto-creation)."""
        admin = self.admin()
        try:
            admin.create_topics(
                {
                    name: {"num_partitions": partitions, "replication_factor": 1},
                    f"{name}.dlq": {"num_partitions": 1, "replication_factor": 1},
                },
                wait_for_metadata=True,
            )
        finally:
            admin.close()


# -- Redis -----------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of this test's own, without persistence; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> float:
        """Run it (empty); return the monotonic time at which it answered PING."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return time.monotonic()
                time.sleep(0.02)
        finally:
            client.close()
        raise AssertionError(
            f"private Redis on {self.addr} not ready\n{tail(self.directory / 'redis.log')}"
        )

    def kill(self) -> float:
        """SIGKILL: everything in it is gone. Returns the monotonic time it had exited."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return time.monotonic()

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> PrivateRedis:
        """Started; killed when the ``with`` block ends (or if it does not start)."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)


# -- service probes --------------------------------------------------------------------


def get_health(url: str, timeout_s: float = 5.0) -> tuple[int | None, Any]:
    """GET ``url``/health: (status code, JSON document), or (None, the error) without an answer."""
    try:
        response = httpx.get(f"{url}/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def process_cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def settled_prefix(events: Iterable[dict[str, Any]]) -> dict[int, int]:
    """Per partition, the lowest offset without an outcome: what may be committed at most.

    Assumes the topic's offsets start at 0 (a fresh topic).
    """
    seen: dict[int, set[int]] = {}
    for event in events:
        seen.setdefault(int(event["partition"]), set()).add(int(event["offset"]))
    prefix = {}
    for partition, offsets in seen.items():
        n = 0
        while n in offsets:
            n += 1
        prefix[partition] = n
    return prefix
