"""The in-memory device registry, device checks, and the ``tokens`` of the message contract.

RedisDevices gets the same registry cases against the real Redis in
tests/integration/test_device_registry_redis.py.
"""

from __future__ import annotations

import orjson
import pytest

from pushtrio.contract.errors import InvalidNotification, NotificationTooLarge
from pushtrio.contract.notification import (
    MAX_TOKENS,
    Notification,
    parse_notification,
    provider_for,
)
from pushtrio.contract.schema import MAX_TOKEN_CHARS
from pushtrio.stores.devices import (
    MAX_DEVICES_PER_USER,
    Device,
    MemoryDevices,
    TooManyDevices,
    check_device,
)


@pytest.fixture
def registry() -> MemoryDevices:
    return MemoryDevices()


async def test_put_tells_new_from_known_and_moves_a_token_between_providers(
    registry: MemoryDevices,
) -> None:
    assert await registry.put("u1", Device("fcm", "tok")) is True
    assert await registry.put("u1", Device("fcm", "tok")) is False
    assert await registry.devices("u1") == [Device("fcm", "tok")]
    assert await registry.put("u1", Device("apns", "tok")) is False  # moved, not added
    assert await registry.devices("u1") == [Device("apns", "tok")]


async def test_devices_are_sorted_by_provider_then_token(registry: MemoryDevices) -> None:
    for device in (Device("fcm", "b"), Device("apns", "z"), Device("fcm", "a")):
        await registry.put("u1", device)
    assert await registry.devices("u1") == [
        Device("apns", "z"),
        Device("fcm", "a"),
        Device("fcm", "b"),
    ]


async def test_devices_many_answers_every_user_asked_for(registry: MemoryDevices) -> None:
    await registry.put("u1", Device("fcm", "one"))
    await registry.put("u2", Device("apns", "two"))
    await registry.put("u2", Device("firebase", "three"))
    assert await registry.devices_many(["u2", "nobody", "u1", "u2"]) == {
        "u1": [Device("fcm", "one")],
        "u2": [Device("apns", "two"), Device("firebase", "three")],
        "nobody": [],
    }
    assert await registry.devices_many([]) == {}
    assert await registry.devices("nobody") == []


async def test_the_device_limit_refuses_new_tokens_only(registry: MemoryDevices) -> None:
    for i in range(MAX_DEVICES_PER_USER):
        assert await registry.put("u1", Device("fcm", f"t{i}"))
    with pytest.raises(TooManyDevices):
        await registry.put("u1", Device("fcm", "one-too-many"))
    assert await registry.put("u1", Device("apns", "t0")) is False  # known: moves
    assert len(await registry.devices("u1")) == MAX_DEVICES_PER_USER
    assert Device("apns", "t0") in await registry.devices("u1")
    assert await registry.put("u2", Device("fcm", "t0")) is True  # the limit is per user
    await registry.remove("u1", "t1")
    assert await registry.put("u1", Device("fcm", "one-too-many")) is True


def test_device_to_dict() -> None:
    assert Device("fcm", "tok").to_dict() == {"provider": "fcm", "token": "tok"}


@pytest.mark.parametrize("token", ["a", "AbC-09_.:x", "f" * MAX_TOKEN_CHARS])
@pytest.mark.parametrize("provider", ["fcm", "apns", "firebase"])
def test_check_device_takes_valid_devices(token: str, provider: str) -> None:
    check_device(token, provider)


@pytest.mark.parametrize(
    ("token", "provider", "starts"),
    [
        ("", "fcm", "token"),
        ("a" * (MAX_TOKEN_CHARS + 1), "fcm", "token"),
        ("with/slash", "fcm", "token"),
        ("with space", "fcm", "token"),
        ("üñí", "fcm", "token"),
        ("tok\n", "fcm", "token"),
        ("tok", "pigeon", "provider"),
        ("tok", "", "provider"),
        ("tok", "FCM", "provider"),
    ],
)
def test_check_device_names_what_is_wrong(token: str, provider: str, starts: str) -> None:
    with pytest.raises(ValueError, match=rf"^{starts} must be"):
        check_device(token, provider)


def message(**fields: object) -> bytes:
    return orjson.dumps({"id": "m1", "user_id": "u1", "title": "hi", **fields})


def test_tokens_are_parsed_in_order_with_duplicates_collapsed() -> None:
    parsed = parse_notification(message(provider="apns", tokens=["b", "a:1", "b", "c-_.", "a:1"]))
    assert parsed.tokens == ("b", "a:1", "c-_.")
    assert parsed.provider == "apns"
    assert parsed.any_provider is False


def test_no_tokens_means_the_registered_devices() -> None:
    for raw in (message(provider="fcm"), message(provider="fcm", tokens=None)):
        assert parse_notification(raw).tokens == ()
    assert parse_notification(message(provider="fcm", tokens=[])).tokens == ()


def test_the_most_tokens_and_the_longest_token_are_accepted() -> None:
    tokens = [f"t{i}" for i in range(MAX_TOKENS - 1)] + ["x" * MAX_TOKEN_CHARS]
    assert len(parse_notification(message(provider="fcm", tokens=tokens)).tokens) == MAX_TOKENS


@pytest.mark.parametrize(
    "tokens",
    [
        [f"t{i}" for i in range(MAX_TOKENS + 1)],
        ["y" * (MAX_TOKEN_CHARS + 1)],
    ],
)
def test_too_many_or_too_long_tokens_are_too_large(tokens: list[str]) -> None:
    with pytest.raises(NotificationTooLarge) as caught:
        parse_notification(message(provider="fcm", tokens=tokens))
    assert caught.value.field == "tokens"


@pytest.mark.parametrize(
    "tokens",
    [
        ["good", "b/ad"],
        ["sp ace"],
        ["ünï"],
        [""],
        ["ok", 7],
        "not-a-list",
        {"t": "fcm"},
    ],
)
def test_malformed_tokens_are_invalid(tokens: object) -> None:
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(message(provider="fcm", tokens=tokens))
    assert type(caught.value) is InvalidNotification
    assert caught.value.field == "tokens"


@pytest.mark.parametrize("provider", [None, ""])
def test_tokens_need_a_named_provider(provider: str | None) -> None:
    fields: dict[str, object] = {"tokens": ["tok"]}
    if provider is not None:
        fields["provider"] = provider
    with pytest.raises(InvalidNotification, match="provider") as caught:
        parse_notification(message(**fields))
    assert caught.value.field == "tokens"


def test_to_json_round_trip_keeps_the_tokens() -> None:
    original = parse_notification(message(provider="firebase", tokens=["t2", "t1"]))
    again = parse_notification(original.to_json())
    assert again == original
    assert again.tokens == ("t2", "t1")
    assert orjson.loads(original.to_json())["tokens"] == ["t2", "t1"]


def test_to_json_round_trip_keeps_any_provider() -> None:
    original = parse_notification(message())
    assert original.any_provider is True
    assert original.provider == provider_for("u1")
    document = orjson.loads(original.to_json())
    assert document["provider"] == ""
    assert "tokens" not in document
    again = parse_notification(original.to_json())
    assert again.any_provider is True
    assert again == original


def test_a_named_provider_round_trips_as_named() -> None:
    original = Notification(id="m1", user_id="u1", title="hi", provider="apns")
    again = parse_notification(original.to_json())
    assert (again.provider, again.any_provider, again.tokens) == ("apns", False, ())
