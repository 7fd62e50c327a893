"""CPU time spent during a phase: by the service, by the harness, by the whole machine.

On a 2-core machine that the broker, Redis, the service and the load generator
share, these say whether a figure was bounded by the service or by the machine.
All three are in percent of one core (the machine's maximum is 100 x cores).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class CpuFigures:
    service_percent: float
    harness_percent: float
    machine_percent: float
    cores: int


def _busy_s() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


def _process_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds between ``__init__`` (or ``restart()``) and ``figures()``.

    Call ``figures()`` while the service process is still alive: a process that
    has exited has no CPU times to read (its share then reads as 0).
    """

    def __init__(self, service_pid: int) -> None:
        self._service = psutil.Process(service_pid)
        self._harness = psutil.Process(os.getpid())
        self.restart()

    def _service_s(self) -> float:
        with contextlib.suppress(psutil.Error):
            return _process_s(self._service)
        return 0.0

    def service_seconds(self) -> float:
        """CPU seconds (user + system) the service has used since it started."""
        return self._service_s()

    def restart(self) -> None:
        self._wall = time.perf_counter()
        self._service_base = self._service_s()
        self._harness_base = _process_s(self._harness)
        self._busy_base = _busy_s()

    def figures(self) -> CpuFigures:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        return CpuFigures(
            service_percent=100.0 * max(0.0, self._service_s() - self._service_base) / wall,
            harness_percent=100.0 * (_process_s(self._harness) - self._harness_base) / wall,
            machine_percent=100.0 * (_busy_s() - self._busy_base) / wall,
            cores=psutil.cpu_count(logical=True) or 1,
        )
