"""The machine and its services: Redis and Kafka up (and down again), machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"
SERVICE_NAMES = ("redis", "kafka")


def redis_addr() -> str:
    return f"127.0.0.1:{os.environ.get('PUSHTRIO_REDIS_PORT', '16379')}"


def kafka_addr() -> str:
    return f"127.0.0.1:{os.environ.get('PUSHTRIO_KAFKA_PORT', '19092')}"


class Services:
    """Makes sure scripts/services.sh's Redis and Kafka answer; stops only what it started."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.started: list[str] = []

    def _script(self, *args: str, quiet: bool = False) -> int:
        result = subprocess.run(
            ["bash", str(SERVICES_SCRIPT), *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=quiet,
            text=True,
            check=False,
            env={**os.environ, "PYTHON": sys.executable},
        )
        return result.returncode

    def ensure(self) -> None:
        """Start whichever of Redis and Kafka does not answer; raise if that fails."""
        for name in SERVICE_NAMES:
            if self._script("status", name, quiet=True) == 0:
                self._console.print(f"[dim]{name}: already running, left as it is[/]")
                continue
            self._console.print(f"{name}: not running, starting it with {SERVICES_SCRIPT.name}")
            self.started.append(name)
            if self._script("start", name) != 0:
                raise RuntimeError(f"scripts/services.sh start {name} failed")

    def close(self) -> None:
        """Stop the services this harness started (in reverse order), and only those."""
        for name in reversed(self.started):
            self._script("stop", name)
        self.started.clear()


def _git(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode == 0:
            return result.stdout.strip()
    return ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def kafka_version() -> str:
    """The broker version scripts/services.sh runs (its KAFKA_VERSION)."""
    with contextlib.suppress(OSError):
        match = re.search(r"^KAFKA_VERSION=(\S+)", SERVICES_SCRIPT.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return "unknown"


def redis_version(addr: str) -> str:
    import redis

    host, port = addr.rsplit(":", 1)
    with contextlib.suppress(Exception):
        client = redis.Redis(host=host, port=int(port), socket_timeout=5)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    return "unknown"


def machine_info(redis: str) -> dict[str, Any]:
    """Facts about the machine and software the figures were measured with."""
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    load_1m, load_5m, load_15m = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kafka_python": metadata.version("kafka-python"),
        "orjson": metadata.version("orjson"),
        "trio": metadata.version("trio"),
        "pushtrio": metadata.version("pushtrio"),
        "kafka": kafka_version(),
        "redis": redis_version(redis),
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_at_start": [round(load_1m, 2), round(load_5m, 2), round(load_15m, 2)],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
