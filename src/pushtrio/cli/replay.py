"""``pushtrio replay``: dead letters from Kafka written back, with a progress bar and a
report table (rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import msgspec
import trio
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import MEMORY_URL
from ..contract.api import DeadLetterView
from ..pipeline.replay import ReplayFilter, ReplayReport, replay_letters
from ..source.kafka.letters import open_kafka_letters
from ..source.kafka.publisher import KafkaPublisher


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
