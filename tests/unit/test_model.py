"""The message contract: strict parsing, the field named in each error, stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from pushtrio.contract.errors import InvalidNotification, NotificationTooLarge
from pushtrio.contract.notification import (
    MAX_DATA_BYTES,
    MAX_RECORD_BYTES,
    PROVIDERS,
    Notification,
    fallback_id,
    parse_notification,
    peek_user_id,
    provider_for,
)
from pushtrio.contract.outcome import Outcome, OutcomeKind

VALID: dict[str, Any] = {"id": "n1", "user_id": "u1", "title": "hello"}


def parse(**fields: Any) -> Notification:
    document = {**VALID, **fields}
    return parse_notification(orjson.dumps({k: v for k, v in document.items() if v is not ...}))


def rejected(raw: bytes, *, default_id: str | None = "d") -> InvalidNotification:
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(raw, default_id=default_id)
    return caught.value


def rejected_field(**fields: Any) -> InvalidNotification:
    document = {k: v for k, v in {**VALID, **fields}.items() if v is not ...}
    return rejected(orjson.dumps(document))


def test_a_full_message_is_parsed() -> None:
    notification = parse(
        type="promo",
        body="world",
        data={"order": 7, "tags": ["a"]},
        priority=3,
        created_at="2024-05-01T10:00:00Z",
        expires_at="2024-05-01T12:00:00.5+02:00",
        provider="apns",
    )
    assert notification == Notification(
        id="n1",
        user_id="u1",
        type="promo",
        title="hello",
        body="world",
        data={"order": 7, "tags": ["a"]},
        priority=3,
        created_at=datetime(2024, 5, 1, 10, tzinfo=UTC),
        expires_at=datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC),
        provider="apns",
    )


def test_defaults() -> None:
    notification = parse()
    assert notification.type == "push"
    assert notification.body == ""
    assert notification.data == {}
    assert notification.priority == 1
    assert notification.created_at is None
    assert notification.expires_at is None
    assert notification.provider == provider_for("u1")


def test_nulls_mean_the_default() -> None:
    notification = parse(type=None, body=None, data=None, priority=None, expires_at=None)
    assert (notification.type, notification.data, notification.priority) == ("push", {}, 1)
    assert notification.expires_at is None


def test_unknown_fields_are_ignored() -> None:
    assert parse(colour="blue", nested={"x": [1, 2]}) == parse()


def test_body_alone_is_enough() -> None:
    notification = parse(title=..., body="only a body")
    assert (notification.title, notification.body) == ("", "only a body")


def test_default_id_is_used_when_there_is_no_id() -> None:
    raw = orjson.dumps({"user_id": "u1", "title": "t"})
    assert parse_notification(raw, default_id="k-abc").id == "k-abc"
    assert parse_notification(orjson.dumps({**VALID, "id": ""}), default_id="k-abc").id == "k-abc"
    assert parse_notification(orjson.dumps(VALID), default_id="k-abc").id == "n1"


def test_no_id_and_no_default_is_invalid() -> None:
    error = rejected(orjson.dumps({"user_id": "u1", "title": "t"}), default_id=None)
    assert error.field == "id"


@pytest.mark.parametrize(
    "raw",
    [b"this is not json", b"{", b"", b"\xff\xfe", b'{"user_id": "u1",}'],
)
def test_not_json(raw: bytes) -> None:
    error = rejected(raw)
    assert error.field is None
    assert "JSON" in error.reason


def test_no_record_value_is_invalid() -> None:
    assert rejected(None).field is None  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [b"[1, 2, 3]", b'"text"', b"42", b"null", b"true"])
def test_not_an_object(raw: bytes) -> None:
    error = rejected(raw)
    assert error.field is None
    assert "object" in error.reason


@pytest.mark.parametrize(
    "user_id",
    [
        ...,  # missing
        None,
        42,
        True,
        ["u1"],
        "",
        "has space",
        "slash/no",
        "trailing-newline\n",
        "émile",
        "u" * 129,
    ],
)
def test_bad_user_id(user_id: Any) -> None:
    assert rejected_field(user_id=user_id).field == "user_id"


@pytest.mark.parametrize("user_id", ["u", "a.b:c@d-e_f", "U" * 128, "0123"])
def test_good_user_id(user_id: str) -> None:
    assert parse(user_id=user_id).user_id == user_id


@pytest.mark.parametrize("priority", ["2", True, False, 1.5, 4.0, -1, 4, 100, [1], {"p": 1}])
def test_bad_priority(priority: Any) -> None:
    assert rejected_field(priority=priority).field == "priority"


@pytest.mark.parametrize("priority", [0, 1, 2, 3])
def test_good_priority(priority: int) -> None:
    assert parse(priority=priority).priority == priority


@pytest.mark.parametrize("name", ["created_at", "expires_at"])
@pytest.mark.parametrize(
    "value",
    [
        1714557600,  # a number is never a timestamp
        1714557600.5,
        True,
        {"at": "2024-05-01T10:00:00Z"},
        "2024-05-01T10:00:00",  # no zone
        "2024-05-01",
        "tomorrow",
        "2024-02-30T10:00:00Z",  # no such day
        "2024-05-01T25:00:00Z",
        "2024-05-01T10:00:00+24:00",
        "2024-05-01T10:00Z",
    ],
)
def test_bad_timestamps(name: str, value: Any) -> None:
    assert rejected_field(**{name: value}).field == name


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01t10:00:00z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01 12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123456-01:30", datetime(2024, 5, 1, 11, 30, 0, 123456, tzinfo=UTC)),
    ],
)
def test_good_timestamps(value: str, moment: datetime) -> None:
    assert parse(created_at=value).created_at == moment


@pytest.mark.parametrize("name", ["created_at", "expires_at"])
@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
)
def test_timestamps_without_a_utc_equivalent_are_invalid(name: str, value: str) -> None:
    error = rejected_field(**{name: value})
    assert error.field == name
    assert name in str(error)


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("0001-01-01T01:00:00+01:00", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
    ],
)
def test_timestamps_at_the_edges_of_the_utc_range_are_kept(value: str, moment: datetime) -> None:
    notification = parse(created_at=value, expires_at=value)
    assert notification.created_at == moment
    assert notification.expires_at == moment
    assert orjson.loads(notification.to_json())["created_at"] == moment.isoformat().replace(
        "+00:00", "Z"
    )


def test_title_and_body_both_missing() -> None:
    assert rejected_field(title=...).field == "title"
    assert rejected_field(title="", body="").field == "title"
    assert rejected_field(title=None, body=None).field == "title"


@pytest.mark.parametrize(
    ("name", "value"),
    [("title", 5), ("body", ["b"]), ("type", 1), ("id", 17), ("provider", 1)],
)
def test_numbers_are_never_strings(name: str, value: Any) -> None:
    error = rejected_field(**{name: value})
    assert error.field == name
    assert not isinstance(error, NotificationTooLarge)


@pytest.mark.parametrize("data", [[1, 2], "text", 5, True])
def test_data_must_be_an_object(data: Any) -> None:
    assert rejected_field(data=data).field == "data"


def test_data_at_the_limit_passes_and_above_is_too_large() -> None:
    overhead = len(orjson.dumps({"k": ""}))
    fits = {"k": "x" * (MAX_DATA_BYTES - overhead)}
    assert len(orjson.dumps(fits)) == MAX_DATA_BYTES
    assert parse(data=fits).data == fits
    error = rejected_field(data={"k": "x" * (MAX_DATA_BYTES - overhead + 1)})
    assert isinstance(error, NotificationTooLarge)
    assert error.field == "data"


@pytest.mark.parametrize(
    ("name", "limit"), [("id", 128), ("title", 256), ("body", 4096), ("type", 64)]
)
def test_string_over_its_limit_is_too_large(name: str, limit: int) -> None:
    assert getattr(parse(**{name: "x" * limit}), name) == "x" * limit
    error = rejected_field(**{name: "x" * (limit + 1)})
    assert isinstance(error, NotificationTooLarge)
    assert error.field == name


def test_record_over_the_limit_is_too_large() -> None:
    raw = orjson.dumps({**VALID, "pad": "x" * MAX_RECORD_BYTES})
    error = rejected(raw)
    assert isinstance(error, NotificationTooLarge)
    assert error.field is None
    # Exactly at the limit it is read (and the unknown padding ignored).
    padding = MAX_RECORD_BYTES - len(orjson.dumps({**VALID, "pad": ""}))
    raw = orjson.dumps({**VALID, "pad": "x" * padding})
    assert len(raw) == MAX_RECORD_BYTES
    assert parse_notification(raw).id == "n1"


@pytest.mark.parametrize("provider", ["sms", "FCM", "apple"])
def test_unknown_provider(provider: str) -> None:
    error = rejected_field(provider=provider)
    assert error.field == "provider"
    assert not isinstance(error, NotificationTooLarge)


def test_long_unknown_provider_is_invalid_not_too_large() -> None:
    error = rejected_field(provider="firebase-cloud-messaging")
    assert error.field == "provider"
    assert not isinstance(error, NotificationTooLarge)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_named_provider_is_kept(provider: str) -> None:
    assert parse(provider=provider).provider == provider


def test_provider_for_is_stable_and_spreads_users() -> None:
    chosen = {f"user-{i}": provider_for(f"user-{i}") for i in range(300)}
    assert chosen == {user: provider_for(user) for user in chosen}
    assert set(chosen.values()) == set(PROVIDERS)
    counts = [list(chosen.values()).count(p) for p in PROVIDERS]
    assert min(counts) > 50  # roughly even, not all on one provider
    assert parse(user_id="user-7").provider == chosen["user-7"]


def test_fallback_id_is_stable_and_distinct() -> None:
    assert fallback_id("t", 0, 5) == fallback_id("t", 0, 5)
    ids = {fallback_id(topic, p, o) for topic in ("t", "u") for p in range(3) for o in range(50)}
    assert len(ids) == 2 * 3 * 50
    assert fallback_id("t", 1, 23) != fallback_id("t", 12, 3)
    assert all(i.startswith("k-") and len(i) <= 128 for i in ids)


def test_is_expired() -> None:
    now = datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert not Notification(id="a", user_id="u").is_expired(now)
    at = Notification(id="a", user_id="u", expires_at=now)
    assert at.is_expired(now)
    assert not at.is_expired(now - timedelta(microseconds=1))
    assert at.is_expired(now + timedelta(seconds=1))
    other_zone = now.astimezone(timezone(timedelta(hours=5)))
    assert Notification(id="a", user_id="u", expires_at=other_zone).is_expired(now)


def test_to_json_round_trips() -> None:
    notification = parse(
        data={"x": 1},
        priority=0,
        created_at="2024-05-01T12:00:00+02:00",
        expires_at="2024-05-02T00:00:00Z",
    )
    document = orjson.loads(notification.to_json())
    assert document["created_at"] == "2024-05-01T10:00:00Z"
    assert parse_notification(notification.to_json()) == notification


def test_outcome_event_document() -> None:
    outcome = Outcome(
        OutcomeKind.FAILED,
        "n1",
        user_id="u1",
        provider="fcm",
        attempts=3,
        latency_ms=1.23456,
        error="503 unavailable",
        ts=5.0,
    )
    assert outcome.to_event() == {
        "event": "failed",
        "id": "n1",
        "user_id": "u1",
        "provider": "fcm",
        "priority": 1,
        "attempts": 3,
        "latency_ms": 1.235,
        "error": "503 unavailable",
        "ts": 5.0,
    }
    assert Outcome(OutcomeKind.DELIVERED, "n2").to_event()["error"] is None


def test_only_failed_and_invalid_are_dead_letters() -> None:
    assert {kind for kind in OutcomeKind if kind.dead_letter} == {
        OutcomeKind.FAILED,
        OutcomeKind.INVALID,
    }


@pytest.mark.parametrize(
    ("raw", "user_id"),
    [
        (b'{"user_id": "u9", "priority": "x"}', "u9"),
        (b'{"user_id": 9}', ""),
        (b"not json", ""),
        (b"[]", ""),
        (None, ""),
    ],
)
def test_peek_user_id(raw: bytes | None, user_id: str) -> None:
    assert peek_user_id(raw) == user_id


@pytest.mark.parametrize(("written", "priority"), [(0.0, 0), (2.0, 2), (3.0, 3)])
def test_a_whole_number_written_with_a_fraction_is_a_priority(
    written: float, priority: int
) -> None:
    document = {"id": "m", "user_id": "u", "title": "t", "priority": written}
    assert parse_notification(orjson.dumps(document)).priority == priority


def test_an_integer_beyond_64_bits_in_data_is_read_as_a_float() -> None:
    raw = b'{"id": "m", "user_id": "u", "title": "t", "data": {"n": -1576709169918333466375345}}'
    notification = parse_notification(raw)
    assert notification.data == {"n": -1.576709169918333466375345e24}
    assert orjson.loads(notification.to_json())["data"] == {"n": -1.576709169918333466375345e24}
