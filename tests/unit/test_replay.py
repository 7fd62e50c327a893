"""Replaying dead letters: the filter, the replayed record, the report, and the command."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import orjson
import pytest

from pushtrio.cli.main import main
from pushtrio.contract.dead_letter import (
    DEAD_LETTER_MAX_VALUE_BYTES,
    REPLAYED_FROM,
    Letter,
    dead_letter,
)
from pushtrio.contract.errors import BrokerUnavailable
from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.contract.records import ORIGIN_HEADER, Message, Record, origin
from pushtrio.pipeline.replay import LISTED_MAX, ReplayFilter, parse_since, replay_letters
from pushtrio.source.memory import MemoryBroker, MemoryLetters

NOW_MS = 1_900_000_000_000
DLQ = "notifications.dlq"
TOPIC = "notifications"


def record(
    offset: int, value: bytes | None = b'{"user_id": "u1", "title": "t"}', **changes: object
) -> Record:
    fields: dict[str, object] = {
        "topic": TOPIC,
        "partition": 2,
        "offset": offset,
        "value": value,
        "timestamp_ms": NOW_MS,
        "key": b"u1",
        "headers": (("source", b"http"), ("trace", b"\x00\xff")),
    }
    fields.update(changes)
    return Record(**fields)  # type: ignore[arg-type]


def letter_of(
    original: Record,
    kind: OutcomeKind = OutcomeKind.FAILED,
    error: str = "unregistered token",
    *,
    message_id: str = "",
    offset: int = 0,
    timestamp_ms: int = NOW_MS,
) -> Letter:
    """The dead letter the pipeline writes for ``original``, as read from the DLQ."""
    outcome = Outcome(kind, message_id or f"id-{original.offset}", error=error, attempts=1)
    key, value, headers = dead_letter(original, outcome)
    return Letter(DLQ, 0, offset, timestamp_ms, key, value, tuple(headers))


def stored(letters: Sequence[Letter]) -> MemoryLetters:
    items = [(x.key, x.value, list(x.headers), x.timestamp_ms) for x in letters]
    return MemoryLetters(DLQ, 0, items, chunk_size=3)


# -- since ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", NOW_MS - 3_600_000),
        ("90", NOW_MS - 90_000),
        ("1h30m", NOW_MS - 5_400_000),
        ("250ms", NOW_MS - 250),
        ("0s", NOW_MS),
        ("2030-01-01T00:00:00Z", 1_893_456_000_000),
        ("2030-01-01t01:00:00+01:00", 1_893_456_000_000),
        ("2030-01-01 00:00:00.5z", 1_893_456_000_500),
        # Longer ago than the epoch, or more digits than a float holds: everything.
        ("1000000h", 0),
        ("9" * 400, 0),
    ],
)
def test_since_takes_a_time_or_a_duration_ago(text: str, expected: int) -> None:
    assert parse_since(text, NOW_MS) == expected


def test_since_reaches_the_ends_of_the_calendar() -> None:
    early = parse_since("0001-01-01T00:30:00+01:00", NOW_MS)
    late = parse_since("9999-12-31T23:59:59-23:59", NOW_MS)
    assert early == int((datetime(1, 1, 1, tzinfo=UTC).timestamp() - 1800) * 1000)
    assert late > parse_since("9999-12-31T23:59:59Z", NOW_MS)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "-1h",
        "1d",
        " 1h",
        "1h\n",
        "2030-01-01",
        "2030-01-01T00:00:00",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01T00:00:00+05:99",
        "0000-01-01T00:00:00Z",
        "\uff11h",  # a digit, but not an ASCII one
    ],
)
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|not a valid date"):
        parse_since(text, NOW_MS)


# -- the replayed record ---------------------------------------------------------------


def test_replaying_a_letter_restores_the_original_record() -> None:
    original = record(17, headers=(("source", b"http"), ("pushtrio-old", b"x")))
    letter = letter_of(original, offset=42)
    assert letter.outcome == "failed"
    assert letter.reason == "unregistered token"
    assert letter.id == "id-17"

    key, value, headers = letter.replayed()

    assert key == original.key
    assert value == original.value
    first = orjson.dumps([original.topic, original.partition, original.offset])
    assert headers == [
        ("source", b"http"),
        (REPLAYED_FROM, orjson.dumps([DLQ, 0, 42])),
        (ORIGIN_HEADER, first),
    ]
    # Replayed again (it failed again), it still names its first record.
    replayed = Record(TOPIC, 0, 99, value, 0, key, headers=tuple(headers))
    assert origin(replayed) == (original.topic, original.partition, original.offset)
    again = letter_of(replayed, offset=43)
    assert dict(again.replayed()[2])[ORIGIN_HEADER] == first


def test_a_tombstone_is_replayed_as_a_tombstone() -> None:
    letter = letter_of(record(3, value=None), OutcomeKind.INVALID, "empty record")
    key, value, _ = letter.replayed()
    assert (key, value) == (b"u1", None)


def test_a_letter_whose_value_was_left_out_says_so() -> None:
    big = record(5, value=b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 1))
    letter = letter_of(big)
    assert letter.dropped
    assert letter.summary().dropped_bytes == DEAD_LETTER_MAX_VALUE_BYTES + 1
    assert not letter_of(record(6)).dropped


def test_the_summary_of_a_letter() -> None:
    letter = letter_of(record(8), offset=11, timestamp_ms=1_893_456_000_250)
    assert msgspec.to_builtins(letter.summary()) == {
        "partition": 0,
        "offset": 11,
        "time": "2030-01-01T00:00:00.250Z",
        "outcome": "failed",
        "id": "id-8",
        "reason": "unregistered token",
        "attempts": 1,
    }


# -- the filter ------------------------------------------------------------------------


def test_the_filter_takes_what_every_condition_allows() -> None:
    failed = letter_of(record(1), error="Gateway Timeout", timestamp_ms=NOW_MS - 10)
    invalid = letter_of(record(2), OutcomeKind.INVALID, "priority: must be 0-3")
    assert ReplayFilter().matches(failed)
    assert ReplayFilter().matches(invalid)
    assert ReplayFilter(outcome="failed").matches(failed)
    assert not ReplayFilter(outcome="failed").matches(invalid)
    assert ReplayFilter(reason="gateway").matches(failed)
    assert not ReplayFilter(reason="gateway").matches(invalid)
    assert ReplayFilter(since_ms=NOW_MS - 10).matches(failed)
    assert not ReplayFilter(since_ms=NOW_MS - 9).matches(failed)
    assert ReplayFilter(ids=frozenset({"id-2", "x"})).matches(invalid)
    assert not ReplayFilter(ids=frozenset({"id-2"})).matches(failed)
    assert not ReplayFilter(outcome="failed", reason="priority").matches(failed)


# -- replaying -------------------------------------------------------------------------


async def test_replay_writes_the_chosen_letters_and_reports_the_skipped() -> None:
    letters = [letter_of(record(i), offset=i) for i in range(7)]
    letters[3] = letter_of(record(3), OutcomeKind.INVALID, "bad", offset=3)
    letters[5] = letter_of(record(5, value=b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 1)), offset=5)
    broker = MemoryBroker()
    seen: list[tuple[int, int]] = []

    report = await replay_letters(
        stored(letters),
        broker,
        TOPIC,
        ReplayFilter(outcome="failed"),
        progress=lambda done, total: seen.append((done, total)),
    )

    written = broker.log(TOPIC)
    assert [orjson.loads(dict(h)[REPLAYED_FROM]) for _, _, h, _ in written] == [
        [DLQ, 0, offset] for offset in (0, 1, 2, 4, 6)
    ]
    assert (report.scanned, report.replayed, report.skipped) == (7, 5, 1)
    assert [x.offset for x in report.letters] == [0, 1, 2, 4, 6]
    assert [x.offset for x in report.skipped_letters] == [5]
    assert seen == [(3, 7), (6, 7), (7, 7)]
    document = report.to_json()
    assert document["matched"] == 6
    assert document["skipped_letters"][0]["dropped_bytes"] == DEAD_LETTER_MAX_VALUE_BYTES + 1


async def test_a_dry_run_writes_nothing_and_lists_what_it_would_replay() -> None:
    letters = [letter_of(record(i), offset=i) for i in range(4)]
    broker = MemoryBroker()
    report = await replay_letters(stored(letters), broker, TOPIC, ReplayFilter(dry_run=True))
    assert broker.log(TOPIC) == []
    assert report.dry_run
    assert report.replayed == 4
    assert [x.id for x in report.letters] == ["id-0", "id-1", "id-2", "id-3"]


async def test_the_limit_stops_the_replay_and_skipped_letters_do_not_count() -> None:
    big = b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 1)
    letters = [letter_of(record(0, value=big), offset=0)]
    letters += [letter_of(record(i), offset=i) for i in range(1, 10)]
    broker = MemoryBroker()
    report = await replay_letters(stored(letters), broker, TOPIC, ReplayFilter(limit=4))
    assert len(broker.log(TOPIC)) == 4
    assert (report.replayed, report.skipped, report.scanned) == (4, 1, 5)
    assert [x.offset for x in report.letters] == [1, 2, 3, 4]


async def test_a_report_lists_only_the_first_letters() -> None:
    n = LISTED_MAX + 20
    items = [(b"k", b"{}", [("pushtrio-id", str(i).encode())], NOW_MS) for i in range(n)]
    report = await replay_letters(
        MemoryLetters(DLQ, 100, items), MemoryBroker(), TOPIC, ReplayFilter()
    )
    assert report.replayed == n
    assert len(report.letters) == LISTED_MAX
    assert report.letters[0].offset == 100


class FailingPublisher(MemoryBroker):
    """Takes the first ``works`` calls, then the broker is down."""

    def __init__(self, works: int) -> None:
        super().__init__()
        self.works = works

    async def publish_many(
        self, topic: str, items: Sequence[Message], partitions: Sequence[int] | None = None
    ) -> None:
        if self.works == 0:
            raise BrokerUnavailable("connection refused")
        self.works -= 1
        await super().publish_many(topic, items, partitions)


async def test_a_broker_failure_says_how_many_were_replayed_before() -> None:
    letters = [letter_of(record(i), offset=i) for i in range(7)]
    publisher = FailingPublisher(works=1)
    with pytest.raises(BrokerUnavailable, match=r"connection refused \(3 letters were replayed"):
        await replay_letters(stored(letters), publisher, TOPIC, ReplayFilter())
    assert len(publisher.log(TOPIC)) == 3


async def test_the_service_replays_from_the_embedded_queue() -> None:
    from pushtrio.service.replay import replayer_for

    broker = MemoryBroker()
    for i in range(3):
        original = record(i)
        outcome = Outcome(OutcomeKind.FAILED, f"id-{i}", error="503 unavailable", attempts=4)
        await broker.publish_many(DLQ, [dead_letter(original, outcome)])
    replay = replayer_for(broker, ("memory://",), topic=TOPIC, dlq_topic=DLQ)

    report = await replay(ReplayFilter(ids=frozenset({"id-1"})))

    assert (report.scanned, report.replayed) == (3, 1)
    [(key, value, headers, _)] = broker.log(TOPIC)
    assert (key, value) == (b"u1", record(1).value)
    assert (REPLAYED_FROM, orjson.dumps([DLQ, 0, 1])) in headers


# -- the command -----------------------------------------------------------------------


async def test_the_dry_run_table_and_the_skipped_letters_are_printed() -> None:
    from rich.console import Console

    from pushtrio.cli.replay import print_report

    letters = [letter_of(record(i), offset=i, message_id=f"order-{i}") for i in range(3)]
    big = record(3, value=b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 7))
    letters.append(letter_of(big, offset=3, message_id="order-big"))
    report = await replay_letters(
        stored(letters), MemoryBroker(), TOPIC, ReplayFilter(dry_run=True)
    )
    output = io.StringIO()

    print_report(report, 1.25, Console(file=output, width=100))

    text = output.getvalue()
    assert "letters to replay" in text
    assert [f"order-{i}" in text for i in range(3)] == [True] * 3
    assert "2030-03-17 17:46:40" in text  # NOW_MS, to the second, UTC
    assert f"would replay 3 letters of {DLQ} to {TOPIC} (4 read, 1.2s)" in text
    assert f"value left out ({DEAD_LETTER_MAX_VALUE_BYTES + 7} bytes)" in text
    assert "skipped 1 letter whose value was left out" in text


def test_replay_on_the_embedded_queue_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "memory://")
    assert main(["replay", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pushtrio replay: KAFKA_BROKERS is memory://")
    assert "POST /dlq/replay" in err


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--since", "yesterday"], "argument --since: expected an RFC 3339 time"),
        (["--limit", "0"], "argument --limit: expected a count >= 1"),
        (["--outcome", "delivered"], "argument --outcome: invalid choice"),
    ],
)
def test_replay_refuses_bad_arguments(
    capsys: pytest.CaptureFixture[str], arguments: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["replay", *arguments])
    assert caught.value.code == 2
    assert complaint in capsys.readouterr().err
