"""Resident set size of a process, sampled from a background thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil

from .stats import steady_value

MIB = 1024 * 1024
SAMPLE_INTERVAL_S = 0.15


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """Peak and steady (median of the second half of the samples) RSS in MiB."""

    peak_mib: float
    steady_mib: float
    samples: int


def summarise_rss(samples_bytes: list[int]) -> MemoryFigures:
    """Peak and steady RSS of ``samples_bytes`` (zeros when there are none)."""
    if not samples_bytes:
        return MemoryFigures(peak_mib=0.0, steady_mib=0.0, samples=0)
    return MemoryFigures(
        peak_mib=max(samples_bytes) / MIB,
        steady_mib=steady_value([float(s) for s in samples_bytes]) / MIB,
        samples=len(samples_bytes),
    )


class RssSampler:
    """Samples one process's RSS every ``interval_s`` in a daemon thread.

    ``mark()`` starts a new window: ``figures()`` then summarises only the samples
    taken since, so one sampler can measure several phases of the same process.
    The thread ends by itself when the process is gone or ``close()`` is called.
    """

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._samples: list[int] = []
        self._start = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = int(self._process.memory_info().rss)
            except psutil.Error:
                return
            with self._lock:
                self._samples.append(rss)
            self._stop.wait(self._interval_s)

    def mark(self) -> None:
        """Start a new measuring window."""
        with self._lock:
            self._start = len(self._samples)

    def figures(self) -> MemoryFigures:
        """Peak and steady RSS since the last ``mark()`` (or since the start)."""
        with self._lock:
            window = self._samples[self._start :]
        return summarise_rss(window)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
