"""Replaying dead letters: which letters to take, and what is written back.

A dead letter (:mod:`.dead_letter`) holds the original key, value and headers of a
record that failed or was invalid, plus ``pushtrio-*`` headers with the reason.
Replaying it writes the original key, value and headers (without any
``pushtrio-*`` one) back to the main topic, plus ``pushtrio-replayed-from``:
``[dlq_topic, partition, offset]`` of the letter. A notification delivered
meanwhile comes out of the pipeline as ``duplicate`` (dedup), not as a second send.

A letter whose value was left out (``pushtrio-value-dropped``, over 512 KiB)
cannot be replayed: it is skipped and reported.

No I/O of its own, and nothing of the sources: :func:`replay_letters` reads a
:class:`LetterSource` (the Kafka reader of :mod:`.replay_kafka`, or
:class:`MemoryLetters` for the embedded queue) and writes with a
:class:`~pushtrio.contract.records.Publisher`. The web layer imports this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from ..config import parse_duration
from ..contract.api import DURATION_PATTERN, DeadLetterView, ReplayReportBody
from ..contract.dead_letter import Letter
from ..contract.errors import BackendError, BrokerUnavailable
from ..contract.outcome import OutcomeKind
from ..contract.records import Publisher
from ..contract.schema import Timestamp
from ..source import LetterSource

OUTCOMES: Final = tuple(kind.value for kind in OutcomeKind if kind.dead_letter)
"""The outcomes a letter can have: failed, invalid."""
LISTED_MAX: Final = 1000
"""Letters a report lists (replayed ones, skipped ones); the counts go on."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(text: str, now_ms: int) -> int:
    """``since`` as Unix milliseconds: an RFC 3339 time, or a duration before ``now_ms``.

    Raises ValueError naming what is expected.
    """
    if re.fullmatch(DURATION_PATTERN, text):
        try:
            seconds = parse_duration(text)
        except ValueError:  # only digits beyond what a float holds
            seconds = math.inf
        # Longer ago than the Unix epoch is simply everything.
        return now_ms - round(min(seconds * 1000, now_ms))
    try:
        moment = msgspec.convert(text, Timestamp)
    except msgspec.ValidationError:
        if re.match(r"[0-9]{4}-", text):
            raise ValueError(f"{text!r} is not a valid date and time") from None
    else:
        # A difference of aware datetimes: no overflow at the ends of the calendar.
        return (moment - _EPOCH) // timedelta(milliseconds=1)
    raise ValueError(
        "expected an RFC 3339 time with a zone (2030-01-01T00:00:00Z) "
        "or a duration ago (30m, 1h, 24h)"
    )


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which letters to replay: all of the given conditions hold (none given: all)."""

    outcome: str = ""
    """``failed`` or ``invalid``; empty for both."""
    reason: str = ""
    """Part of the reason, ignoring case."""
    since_ms: int | None = None
    """Letters written at or after this time (the record's timestamp, Unix ms)."""
    ids: frozenset[str] = frozenset()
    """Only letters of these notification ids."""
    limit: int | None = None
    """Replay at most this many (skipped letters do not count)."""
    dry_run: bool = False
    """Report what would be replayed; write nothing."""

    def matches(self, letter: Letter) -> bool:
        if self.outcome and letter.outcome != self.outcome:
            return False
        if self.reason and self.reason.casefold() not in letter.reason.casefold():
            return False
        if self.since_ms is not None and letter.timestamp_ms < self.since_ms:
            return False
        return not self.ids or letter.id in self.ids


@dataclass(slots=True)
class ReplayReport:
    """What a replay did (or, dry, would do); lists the first :data:`LISTED_MAX` letters."""

    dlq_topic: str
    topic: str
    dry_run: bool = False
    scanned: int = 0
    """Letters read from the dead-letter topic."""
    replayed: int = 0
    """Letters written back to the topic (dry: that would be)."""
    skipped: int = 0
    """Letters that match but cannot be replayed (value left out)."""
    letters: list[DeadLetterView] = field(default_factory=list)
    """:meth:`Letter.summary` of the letters replayed (kept without their values)."""
    skipped_letters: list[DeadLetterView] = field(default_factory=list)

    def view(self) -> ReplayReportBody:
        """The report as ``POST /dlq/replay`` answers it."""
        return ReplayReportBody(
            dry_run=self.dry_run,
            dlq_topic=self.dlq_topic,
            topic=self.topic,
            scanned=self.scanned,
            matched=self.replayed + self.skipped,
            replayed=self.replayed,
            skipped=self.skipped,
            letters=self.letters,
            skipped_letters=self.skipped_letters,
        )

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return msgspec.to_builtins(self.view())  # type: ignore[no-any-return]

    def take(self, chunk: Sequence[Letter], chosen: ReplayFilter) -> list[Letter]:
        """The letters of ``chunk`` to replay, counting what is read and skipped."""
        selected: list[Letter] = []
        for letter in chunk:
            if chosen.limit is not None and self.replayed + len(selected) >= chosen.limit:
                break
            self.scanned += 1
            if not chosen.matches(letter):
                continue
            if letter.dropped:
                self.skipped += 1
                if len(self.skipped_letters) < LISTED_MAX:
                    self.skipped_letters.append(letter.summary())
            else:
                selected.append(letter)
        return selected

    def count_replayed(self, letters: Sequence[Letter]) -> None:
        """``letters`` (from :meth:`take`) were written back."""
        self.replayed += len(letters)
        room = LISTED_MAX - len(self.letters)
        self.letters += [letter.summary() for letter in letters[: max(0, room)]]

    def done(self, chosen: ReplayFilter) -> bool:
        """Whether the limit is reached."""
        return chosen.limit is not None and self.replayed >= chosen.limit


Progress = Callable[[int, int], None]
"""Called after each chunk with the letters read so far and the total."""


async def replay_letters(
    letters: LetterSource,
    publisher: Publisher,
    topic: str,
    chosen: ReplayFilter,
    *,
    progress: Progress | None = None,
) -> ReplayReport:
    """Write the letters ``chosen`` takes back to ``topic``, a chunk at a time.

    Returns the report. Raises BrokerUnavailable when a chunk cannot be written
    (or read); the letters of earlier chunks stay written, and the message says
    how many. Cancellation leaves the current chunk written or not.
    """
    report = ReplayReport(letters.topic, topic, dry_run=chosen.dry_run)
    while not report.done(chosen):
        chunk = await letters.next_chunk()
        if chunk is None:
            break
        selected = report.take(chunk, chosen)
        if selected and not chosen.dry_run:
            try:
                await publisher.publish_many(topic, [letter.replayed() for letter in selected])
            except BackendError as exc:
                raise BrokerUnavailable(
                    f"{exc} ({report.replayed} letters were replayed before)"
                ) from exc
        report.count_replayed(selected)
        if progress is not None:
            progress(report.scanned, letters.total)
    return report
