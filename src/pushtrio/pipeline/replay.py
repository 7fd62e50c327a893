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
from typing import Any, Final, Protocol

import msgspec
import orjson
import trio

from ..config import parse_duration
from ..contract.api import DURATION_PATTERN, DeadLetterView, ReplayReportBody
from ..contract.dead_letter import HEADER_PREFIX
from ..contract.errors import BackendError, BrokerUnavailable
from ..contract.outcome import OutcomeKind
from ..contract.records import ORIGIN_HEADER, Headers, Message, Publisher
from ..contract.schema import Timestamp

REPLAYED_FROM: Final = "pushtrio-replayed-from"
VALUE_DROPPED: Final = "pushtrio-value-dropped"
OUTCOMES: Final = tuple(kind.value for kind in OutcomeKind if kind.dead_letter)
"""The outcomes a letter can have: failed, invalid."""
LISTED_MAX: Final = 1000
"""Letters a report lists (replayed ones, skipped ones); the counts go on."""
CHUNK_SIZE: Final = 500
"""Letters read, and written back, at once."""

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


def format_ms(timestamp_ms: int) -> str:
    """Unix milliseconds as RFC 3339 in UTC, to the millisecond."""
    moment = _EPOCH + timedelta(milliseconds=timestamp_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Letter:
    """One record of the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str:
        """The last value of header ``name``, decoded; empty when absent."""
        for key, value in reversed(self.headers):
            if key == name:
                return (value or b"").decode(errors="replace")
        return ""

    @property
    def id(self) -> str:
        return self.header("pushtrio-id")

    @property
    def outcome(self) -> str:
        return self.header("pushtrio-outcome")

    @property
    def reason(self) -> str:
        return self.header("pushtrio-reason")

    @property
    def dropped(self) -> bool:
        """Whether the value was left out of the letter (it cannot be replayed)."""
        return any(key == VALUE_DROPPED for key, _ in self.headers)

    def replayed(self) -> Message:
        """What replaying writes to the main topic: the original record, and where from."""
        headers: Headers = [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]
        headers.append((REPLAYED_FROM, orjson.dumps([self.topic, self.partition, self.offset])))
        # The first record's coordinates, so that a notification without an id keeps
        # the id it had (dedup knows it): older letters have only pushtrio-source.
        first = self.header(ORIGIN_HEADER) or self.header("pushtrio-source")
        if first:
            headers.append((ORIGIN_HEADER, first.encode()))
        return self.key, self.value, headers

    def summary(self) -> DeadLetterView:
        """The letter as a report lists it."""
        attempts = self.header("pushtrio-attempts")
        view = DeadLetterView(
            partition=self.partition,
            offset=self.offset,
            time=format_ms(self.timestamp_ms),
            outcome=self.outcome,
            id=self.id,
            reason=self.reason,
            attempts=int(attempts) if attempts.isdigit() else None,
        )
        if self.dropped:
            size = self.header(VALUE_DROPPED)
            view.dropped_bytes = int(size) if size.isdigit() else None
        return view


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


class LetterSource(Protocol):
    """Letters of one dead-letter topic, read once from its start to a fixed end."""

    topic: str
    total: int
    """Letters between the start (``since`` taken into account) and the end: at most
    this many are read (fewer when some were deleted meanwhile)."""

    async def next_chunk(self) -> list[Letter] | None:
        """The next letters, oldest first per partition; None once all are read.

        Raises BrokerUnavailable when the broker stops answering.
        """
        ...


class MemoryLetters:
    """A :class:`LetterSource` over a copy of the embedded queue's dead-letter topic."""

    def __init__(
        self,
        topic: str,
        start_offset: int,
        items: Sequence[tuple[bytes | None, bytes | None, Headers, int]],
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.topic = topic
        self._letters = [
            Letter(topic, 0, start_offset + i, stamp, key, value, tuple(headers))
            for i, (key, value, headers, stamp) in enumerate(items)
        ]
        self.total = len(self._letters)
        self._chunk_size = chunk_size
        self._position = 0

    async def next_chunk(self) -> list[Letter] | None:
        await trio.lowlevel.checkpoint()
        if self._position >= len(self._letters):
            return None
        chunk = self._letters[self._position : self._position + self._chunk_size]
        self._position += len(chunk)
        return chunk


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
