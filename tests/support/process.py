"""``pushtrio serve`` as a child process, the way users run it.

The service starts on PORT=0, so the kernel picks a free port at bind time (no
port is picked here, released and handed on: nothing can take it in between).
The service logs ``pushtrio <version> ready on http://127.0.0.1:<port>: ...`` on
stderr once it serves; :meth:`ServeProcess.wait_ready` reads the address from that
line in the process's log file. The line is logged at level info: LOG_LEVEL
defaults to ``info`` here, and waiting for readiness refuses a higher level.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson
import trio

from .files import LineTail

STOP_TIMEOUT_S = 20.0
"""How long :meth:`ServeProcess.stop` waits after SIGTERM before SIGKILL."""
READY_TIMEOUT_S = 60.0
POLL_S = 0.02

_READY = re.compile(r"^pushtrio \S+ ready on (?P<url>\S+?)(?:, |: )")
_READY_LEVELS = ("debug", "info")


class ServeProcess:
    """``python -m pushtrio serve`` with ``env`` on PORT=0; stdout and stderr go to ``log_path``.

    The child's environment is this process's, minus ``unset``, with LOG_LEVEL=info,
    then ``env``, then PORT=0 (``env`` may not ask for another port). With
    ``new_session`` the child runs in a session of its own, so a Ctrl-C at the
    terminal reaches only the parent, which stops the child itself.

    :meth:`wait_ready` (or :meth:`wait_ready_async` in trio code) waits for the
    "ready on" line and sets :attr:`url` and :attr:`port`. :meth:`stop` (also on
    leaving the ``with`` block) sends SIGTERM, waits up to ``stop_timeout_s``, then
    sends SIGKILL. :meth:`log_tail` is the end of the log, for failure messages.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        unset: Iterable[str] = (),
        new_session: bool = False,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        if env.get("PORT", "0") != "0":
            raise ValueError(f"ServeProcess starts serve on PORT=0, not {env['PORT']}")
        self.env = {**env, "PORT": "0"}
        self.log_path = log_path
        self.stop_timeout_s = stop_timeout_s
        self._url: str | None = None
        child_env = {k: v for k, v in os.environ.items() if k not in set(unset)}
        child_env = {**child_env, "LOG_LEVEL": "info", **self.env}
        self._log_level = child_env["LOG_LEVEL"].lower()
        with open(log_path, "ab") as log:
            # An earlier process's lines in the same log are not this one's.
            self._log_lines = LineTail(log_path, offset=log.seek(0, os.SEEK_END))
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pushtrio", "serve"],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- readiness ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the first address of the ready line."""
        if self._url is None:
            raise RuntimeError("serve has not logged its ready line yet: call wait_ready()")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Block until the ready line is logged; return :attr:`url`.

        Raises AssertionError, with the end of the log, if the process exits first
        or ``timeout_s`` passes.
        """
        deadline = time.monotonic() + timeout_s
        while not self._ready(deadline):
            time.sleep(POLL_S)
        return self.url

    async def wait_ready_async(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """:meth:`wait_ready` for trio code."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._ready(deadline):
                return self.url
            await trio.sleep(POLL_S)

    def _ready(self, deadline: float) -> bool:
        """One look at the log: whether the ready line is there (AssertionError on failure)."""
        if self._log_level not in _READY_LEVELS:
            raise ValueError(
                f"LOG_LEVEL={self._log_level}: serve logs its ready line at info level"
            )
        if self._url is not None:
            return True
        exited = self.proc.poll()
        for line in self._log_lines.read_new():
            with contextlib.suppress(ValueError):
                record = orjson.loads(line)
                if isinstance(record, dict):
                    match = _READY.match(str(record.get("msg", "")))
                    if match:
                        self._url = match["url"]
                        return True
        if exited is not None:
            raise AssertionError(
                f"serve exited with status {exited} before it was ready; "
                f"end of {self.log_path}:\n{self.log_tail()}"
            )
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"serve was not ready in time; end of {self.log_path}:\n{self.log_tail()}"
            )
        return False

    # -- stopping ----------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while it runs."""
        return self.proc.poll()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        """The exit status; subprocess.TimeoutExpired if still running after ``timeout_s``."""
        return self.proc.wait(timeout=timeout_s)

    async def wait_async(self, timeout_s: float) -> int | None:
        """The exit status, or None if still running after ``timeout_s`` (trio code)."""
        with trio.move_on_after(timeout_s):
            while True:
                if self.proc.poll() is not None:
                    break
                await trio.sleep(POLL_S)
        return self.proc.poll()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout_s``; return the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL (no chance to commit or clean up); return the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        return self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's log (stdout and stderr), for failure messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def serve_env(
    kafka: str, redis: str, topic: str, tmp: Path, name: str, **extra: str
) -> dict[str, str]:
    """The environment of a ``serve`` on real Kafka and Redis, consuming ``topic``.

    Its outcome log and mock provider journal are ``<name>-outcomes.jsonl`` and
    ``<name>-provider.txt`` in ``tmp``; ``extra`` overrides any setting.
    """
    return {
        "KAFKA_BROKERS": kafka,
        "KAFKA_TOPIC": topic,
        "CONSUMER_GROUP": f"group-{topic}",
        "DLQ_TOPIC": f"{topic}.dlq",
        "REDIS_ADDR": redis,
        "PROVIDER_SUCCESS_RATE": "1",
        "PROVIDER_LATENCY": "2ms",
        "RATE_LIMIT_PER_USER": "1000",
        "SHUTDOWN_TIMEOUT": "10s",
        "WORKER_COUNT": "8",
        "MAX_QUEUE_SIZE": "1000",
        "OUTCOME_LOG": str(tmp / f"{name}-outcomes.jsonl"),
        "MOCK_PROVIDER_JOURNAL": str(tmp / f"{name}-provider.txt"),
        "LOG_LEVEL": "info",
        **extra,
    }
