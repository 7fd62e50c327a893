"""Outcomes written down: the service log (:class:`OutcomeLogger`) and the optional
OUTCOME_LOG file of JSON lines (:class:`OutcomeJournal`). Both are outcome sinks: the
pipeline calls them with each settled group.

The service log gets failures at warning, the rest at debug, never a flood.

Every ``failed`` and ``invalid`` outcome is logged at warning with its id, reason and
origin (partition and offset), up to ``burst`` lines per ``window_s``; beyond that the
lines are counted and one summary line says how many were left out. At debug level
every outcome is logged (same budget), which is how an operator follows one
notification through the pipeline.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import BinaryIO

import orjson

from ..contract.outcome import Outcome, OutcomeKind

log = logging.getLogger("pushtrio.outcomes")

WARN_KINDS = frozenset({OutcomeKind.FAILED, OutcomeKind.INVALID})


class OutcomeLogger:
    """Rate-limited logging of outcomes; call :meth:`record` with each settled group."""

    def __init__(
        self,
        *,
        burst: int = 20,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._window_start = clock()
        self._used = 0
        self._suppressed: Counter[str] = Counter()

    def record(self, outcomes: Sequence[Outcome]) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            # The hot path: most groups hold no failure, and then nothing is logged.
            outcomes = [o for o in outcomes if o.event in WARN_KINDS]
        for outcome in outcomes:
            warn = outcome.event in WARN_KINDS
            self._roll()
            if self._used >= self._burst:
                self._suppressed[outcome.event.value] += 1
                continue
            self._used += 1
            log.log(
                logging.WARNING if warn else logging.DEBUG,
                "%s id=%s user=%s provider=%s attempts=%d origin=partition %d offset %d%s",
                outcome.event.value,
                outcome.id,
                outcome.user_id or "-",
                outcome.provider or "-",
                outcome.attempts,
                outcome.partition,
                outcome.offset,
                f" reason={outcome.error}" if outcome.error else "",
            )

    def _roll(self) -> None:
        now = self._clock()
        if now - self._window_start < self._window_s:
            return
        if self._suppressed:
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self._suppressed.items()))
            log.warning(
                "%s outcomes not logged in the last %.0fs (more than %d lines)",
                counts,
                now - self._window_start,
                self._burst,
            )
            self._suppressed.clear()
        self._window_start = now
        self._used = 0


class OutcomeJournal:
    """Appends one JSON line per outcome (the feed's event plus partition and offset).

    ``stream`` should be unbuffered (``open(path, "ab", buffering=0)``): each group
    reaches the OS at once and survives a kill -9. The caller closes it.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def record(self, outcomes: Sequence[Outcome]) -> None:
        lines = []
        for outcome in outcomes:
            event = outcome.to_event()
            event["partition"] = outcome.partition
            event["offset"] = outcome.offset
            lines.append(orjson.dumps(event))
        if lines:
            self._stream.write(b"\n".join(lines) + b"\n")
