"""``pushtrio serve`` as a child process, its outcome log, and the service environment."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

from .cpu import CpuMeter
from .memory import RssSampler

STOP_TIMEOUT_S = 20.0
HUGE_LIMIT = 1_000_000


class BenchmarkError(RuntimeError):
    """A phase could not be measured (the service died, a wait timed out, ...)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_env(
    *,
    kafka: str,
    redis: str,
    redis_db: int,
    topic: str,
    group: str,
    outcome_log: Path,
    overrides: Mapping[str, str],
) -> dict[str, str]:
    """The environment of one ``pushtrio serve``: fast, non-biting defaults, then ``overrides``.

    Defaults: providers at 0 ms and always successful, a limit that never bites,
    warnings only. Phases override what they measure.
    """
    env = {
        "KAFKA_BROKERS": kafka,
        "KAFKA_TOPIC": topic,
        "CONSUMER_GROUP": group,
        "DLQ_TOPIC": f"{topic}.dlq",
        "REDIS_ADDR": redis,
        "REDIS_DB": str(redis_db),
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "warning",
        "OUTCOME_LOG": str(outcome_log),
        "PROVIDER_LATENCY": "0",
        "PROVIDER_SUCCESS_RATE": "1",
        "RATE_LIMIT_PER_USER": str(HUGE_LIMIT),
        "RATE_LIMIT_WINDOW": "1h",
        "RETRY_DELAY": "50ms",
    }
    env.update(overrides)
    return env


class ServeProcess:
    """One ``python -m pushtrio serve`` child with an RSS sampler on it.

    The child runs in its own session, so a Ctrl-C at the terminal reaches only the
    harness, which then stops the child itself: ``stop()`` (also on ``__exit__``)
    sends SIGTERM, waits up to STOP_TIMEOUT_S and then sends SIGKILL.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.outcome_log = Path(env["OUTCOME_LOG"])
        self._log: BinaryIO = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pushtrio", "serve"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self.rss = RssSampler(self.proc.pid)
            self.cpu = CpuMeter(self.proc.pid)
        except BaseException:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._log.close()
            raise

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def check_alive(self) -> None:
        """Raise BenchmarkError (with the end of its log) if the child has exited."""
        code = self.proc.poll()
        if code is not None:
            raise BenchmarkError(
                f"pushtrio serve exited with status {code}; end of {self.log_path}:\n"
                + self.log_tail()
            )

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> int | None:
        """Stop the child (SIGTERM, then SIGKILL); return its exit status."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self.rss.close()
            self._log.close()
        return self.proc.returncode


class OutcomeTail:
    """Reads the outcome log (JSON lines) incrementally, as the service appends it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        """The outcomes appended since the last call (a half-written last line waits)."""
        try:
            with open(self._path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [orjson.loads(line) for line in lines if line.strip()]
