"""``pushtrio serve`` as a measured child process, its outcome log, and the service environment."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from tests.support.files import LineTail
from tests.support.process import ServeProcess

from .cpu import CpuMeter
from .memory import RssSampler

HUGE_LIMIT = 1_000_000


class BenchmarkError(RuntimeError):
    """A phase could not be measured (the service died, a wait timed out, ...)."""


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
    warnings only, and PORT=0 (the kernel picks a free port at bind time). Phases
    override what they measure.
    """
    env = {
        "KAFKA_BROKERS": kafka,
        "KAFKA_TOPIC": topic,
        "CONSUMER_GROUP": group,
        "DLQ_TOPIC": f"{topic}.dlq",
        "REDIS_ADDR": redis,
        "REDIS_DB": str(redis_db),
        "PORT": "0",
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


class MeasuredServe(ServeProcess):
    """One ``pushtrio serve`` child (see :class:`ServeProcess`) with RSS and CPU meters on it.

    The child runs in its own session, so a Ctrl-C at the terminal reaches only the
    harness, which then stops the child itself: ``stop()`` (also on ``__exit__``)
    sends SIGTERM, waits up to STOP_TIMEOUT_S (20 s) and then sends SIGKILL. The phases do
    not wait for its ready line: they time it from the start of the process.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.outcome_log = Path(env["OUTCOME_LOG"])
        self.started_wall = time.time()
        self.started = time.perf_counter()
        super().__init__(env, log_path, new_session=True)
        try:
            self.rss = RssSampler(self.proc.pid)
            self.cpu = CpuMeter(self.proc.pid)
        except BaseException:
            self.kill()
            raise

    def check_alive(self) -> None:
        """Raise BenchmarkError (with the end of its log) if the child has exited."""
        code = self.returncode
        if code is not None:
            raise BenchmarkError(
                f"pushtrio serve exited with status {code}; end of {self.log_path}:\n"
                + self.log_tail()
            )

    def stop(self) -> int | None:
        """Stop the child (SIGTERM, then SIGKILL); return its exit status."""
        try:
            return super().stop()
        finally:
            self.rss.close()


class OutcomeTail:
    """Reads the outcome log (JSON lines) incrementally, as the service appends it."""

    def __init__(self, path: Path) -> None:
        self._lines = LineTail(path)

    def read_new(self) -> list[dict[str, Any]]:
        """The outcomes appended since the last call (a half-written last line waits)."""
        return [orjson.loads(line) for line in self._lines.read_new() if line.strip()]
