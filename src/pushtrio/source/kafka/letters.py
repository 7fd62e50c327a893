"""Where replays read and write: the dead-letter topic on Kafka, or in the embedded queue.

:class:`KafkaLetters` reads the dead-letter topic without a consumer group (no
offsets committed, no other reader disturbed): each partition from its start (or
from the first letter at ``since``) up to the end offset it had when the replay
began, so a replay is bounded and terminates even while new letters arrive
(replayed notifications that fail again among them).

:func:`replayer_for` is the service's replay (``POST /dlq/replay``), on the
service's own publisher; :func:`run_replay` is ``pushtrio replay``'s, with its
progress bar, and :func:`print_report` shows what it did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec
import trio
from kafka import TopicPartition
from kafka.errors import KafkaError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ...config import MEMORY_URL
from ...contract.api import DeadLetterView
from ...contract.errors import BrokerUnavailable
from ...contract.records import Publisher
from ...pipeline.replay import (
    CHUNK_SIZE,
    Letter,
    MemoryLetters,
    ReplayFilter,
    ReplayReport,
    replay_letters,
)
from ..memory import MemoryBroker
from .clients import CALL_TIMEOUT_MS, new_reader
from .publisher import KafkaPublisher

STALL_TIMEOUT_S: Final = 30.0
"""A partition that yields nothing for this long, short of its end, fails the replay."""
POLL_MS: Final = 500
CLOSE_TIMEOUT_S: Final = 5.0
"""Limit on waiting for the consumer's close (it finishes in its thread anyway)."""


def _letter(record: Any) -> Letter:
    return Letter(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.key,
        record.value,
        tuple(record.headers or ()),
    )


class KafkaLetters:
    """A :class:`~pushtrio.pipeline.replay.LetterSource` on Kafka.

    Open it with :func:`open_kafka_letters`.

    The ``*_blocking`` methods call kafka-python in a worker thread, one at a time
    (a lock makes a close wait for a read abandoned on cancellation). Partitions are
    read one after another, in order, so a replay with a limit takes the same
    letters as its dry run.
    """

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.topic = topic
        self.total = 0
        self._brokers = list(brokers)
        self._chunk_size = chunk_size
        self._stall_timeout_s = stall_timeout_s
        self._consumer: Any = None
        self._ranges: list[tuple[TopicPartition, int, int]] = []
        self._current: TopicPartition | None = None
        self._lock = threading.Lock()

    def open_blocking(self, since_ms: int | None) -> None:
        """Connect, and take each partition's start and end; BrokerUnavailable on failure."""
        with self._lock:
            self._open(since_ms)

    def _open(self, since_ms: int | None) -> None:
        try:
            self._consumer = new_reader(
                self._brokers, "pushtrio-replay", max_poll_records=self._chunk_size
            )
            self._ranges = self._take_ranges(since_ms)
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc}") from exc
        self.total = sum(end - start for _, start, end in self._ranges)

    def _take_ranges(self, since_ms: int | None) -> list[tuple[TopicPartition, int, int]]:
        consumer = self._consumer
        partitions = [
            TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic))
        ]
        if not partitions:
            return []
        starts = consumer.beginning_offsets(partitions, timeout_ms=CALL_TIMEOUT_MS)
        ends = consumer.end_offsets(partitions, timeout_ms=CALL_TIMEOUT_MS)
        if since_ms is not None and since_ms > 0:
            found = consumer.offsets_for_times(
                dict.fromkeys(partitions, since_ms), timeout_ms=CALL_TIMEOUT_MS
            )
            # None: no letter of the partition is that recent.
            starts = {tp: ends[tp] if at is None else at.offset for tp, at in found.items()}
        return [(tp, starts[tp], ends[tp]) for tp in partitions if ends[tp] > starts[tp]]

    def read_blocking(self) -> list[Letter] | None:
        """Up to a chunk of letters of one partition; None once every range is read."""
        try:
            with self._lock:
                return self._read()
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc}") from exc

    def _read(self) -> list[Letter] | None:
        consumer = self._consumer
        deadline = time.monotonic() + self._stall_timeout_s
        while self._ranges:
            tp, start, end = self._ranges[0]
            if self._current != tp:
                consumer.assign([tp])
                consumer.seek(tp, start)
                self._current = tp
            records = consumer.poll(timeout_ms=POLL_MS, max_records=self._chunk_size).get(tp, [])
            letters = [_letter(r) for r in records if r.offset < end]
            if records:
                deadline = time.monotonic() + self._stall_timeout_s
            # Transaction markers and compaction leave gaps: the position says where we are.
            position = consumer.position(tp, timeout_ms=CALL_TIMEOUT_MS)
            if position is not None and position >= end:
                self._ranges.pop(0)
            if letters:
                return letters
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"{self.topic} partition {tp.partition}: nothing read for "
                    f"{self._stall_timeout_s:g}s at offset {position}, short of {end}"
                )
        return None

    def close_blocking(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    async def next_chunk(self) -> list[Letter] | None:
        return await trio.to_thread.run_sync(self.read_blocking, abandon_on_cancel=True)


@asynccontextmanager
async def open_kafka_letters(
    brokers: Sequence[str], topic: str, since_ms: int | None
) -> AsyncIterator[KafkaLetters]:
    """Open :class:`KafkaLetters` on ``topic``; close its consumer on exit.

    Raises BrokerUnavailable when Kafka cannot be reached. On cancellation the
    blocking call under way is abandoned (it ends within its own timeouts) and the
    close waits for it, in its thread: cancelled, this returns within
    CLOSE_TIMEOUT_S.
    """
    letters = KafkaLetters(brokers, topic)
    try:
        await trio.to_thread.run_sync(letters.open_blocking, since_ms, abandon_on_cancel=True)
        yield letters
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            await trio.to_thread.run_sync(letters.close_blocking, abandon_on_cancel=True)


Replay = Callable[[ReplayFilter], Awaitable[ReplayReport]]


def replayer_for(
    publisher: Publisher, brokers: Sequence[str], *, topic: str, dlq_topic: str
) -> Replay:
    """The service's replay: letters of ``dlq_topic`` written back to ``topic``.

    With the embedded queue (``publisher`` is its :class:`MemoryBroker`) the letters
    are those it keeps; with Kafka they are read by :class:`KafkaLetters`. Either way
    they are written with ``publisher``, so the running pipeline picks them up.
    """

    async def replay(chosen: ReplayFilter) -> ReplayReport:
        if isinstance(publisher, MemoryBroker):
            kept = publisher.log(dlq_topic)
            letters = MemoryLetters(dlq_topic, publisher.start_offset(dlq_topic), kept)
            return await replay_letters(letters, publisher, topic, chosen)
        async with open_kafka_letters(brokers, dlq_topic, chosen.since_ms) as kafka:
            return await replay_letters(kafka, publisher, topic, chosen)

    return replay


def run_replay(
    brokers: Sequence[str],
    topic: str,
    dlq_topic: str,
    chosen: ReplayFilter,
    *,
    progress: bool = True,
) -> ReplayReport:
    """``pushtrio replay``: replay from Kafka with a progress bar (on stderr, if a terminal).

    Raises ValueError on the embedded queue (its letters live inside ``pushtrio
    serve``: use POST /dlq/replay there) and BrokerUnavailable when Kafka does not
    answer or take the letters.
    """
    if list(brokers) == [MEMORY_URL]:
        raise ValueError(
            "KAFKA_BROKERS is memory://: the embedded dead-letter topic lives inside "
            "`pushtrio serve`; set KAFKA_BROKERS, or POST /dlq/replay to the service"
        )
    return trio.run(_replay_from_kafka, brokers, topic, dlq_topic, chosen, progress)


async def _replay_from_kafka(
    brokers: Sequence[str], topic: str, dlq_topic: str, chosen: ReplayFilter, progress: bool
) -> ReplayReport:
    publisher = KafkaPublisher(brokers, timeout_s=10.0)
    started = time.monotonic()
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]replay" + (" (dry run)" if chosen.dry_run else "")),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # On a terminal only: a log file would get a stray line, not a bar.
        disable=not (progress and console.is_terminal),
    )

    def advance(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        bar.update(task, completed=done, total=total, rate=rate)

    try:
        with bar:
            task = bar.add_task("replay", total=None, rate=0.0)
            async with open_kafka_letters(brokers, dlq_topic, chosen.since_ms) as letters:
                bar.update(task, total=letters.total)
                return await replay_letters(letters, publisher, topic, chosen, progress=advance)
    finally:
        with trio.CancelScope(shield=True):
            await publisher.aclose()


COLUMNS: Final = {
    "partition": "part",
    "offset": "offset",
    "time": "time (UTC)",
    "outcome": "outcome",
    "attempts": "tries",
    "id": "id",
    "reason": "reason",
}
"""The table's columns: summary field and heading."""


def letters_table(letters: Sequence[DeadLetterView], title: str) -> Table:
    """Letters (their summaries) as a table: where, when, outcome, id, attempts, reason."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name, heading in COLUMNS.items():
        if name in {"id", "reason"}:
            table.add_column(heading, overflow="fold")
        else:
            right = name in {"partition", "offset", "attempts"}
            table.add_column(heading, justify="right" if right else "left", no_wrap=True)
    for letter in letters:
        row = msgspec.structs.asdict(letter)
        # To the second, without the zone: a table, not an audit trail (see --json).
        row["time"] = row["time"][:19].replace("T", " ")
        if row["dropped_bytes"] is not msgspec.UNSET:
            row["reason"] = f"value left out ({row['dropped_bytes']} bytes); {row['reason']}"
        table.add_row(*("" if row[name] is None else str(row[name]) for name in COLUMNS))
    return table


def print_report(report: ReplayReport, elapsed_s: float, console: Console | None = None) -> None:
    """The dry run's table, or the count replayed; skipped letters listed in both."""
    console = console or Console()
    if report.dry_run and report.letters:
        console.print(letters_table(report.letters, "letters to replay"))
        more = report.replayed - len(report.letters)
        if more > 0:
            console.print(
                f"... and {more} more (narrow them with --limit or the filters)", highlight=False
            )
    verb = "would replay" if report.dry_run else "replayed"
    console.print(
        f"{verb} {_letters(report.replayed)} of {report.dlq_topic} to {report.topic} "
        f"({report.scanned} read, {elapsed_s:.1f}s)",
        highlight=False,
    )
    if report.skipped:
        console.print(letters_table(report.skipped_letters, "skipped: value left out"))
        console.print(
            f"skipped {_letters(report.skipped)} whose value was left out of the dead "
            "letter (over 512 KiB): they cannot be replayed",
            highlight=False,
        )


def _letters(n: int) -> str:
    return f"{n} letter" if n == 1 else f"{n} letters"
