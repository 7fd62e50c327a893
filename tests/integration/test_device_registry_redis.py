"""RedisDevices against the real test Redis: the registry's semantics (the same cases
run over MemoryDevices, so both backends are held to one contract), the key layout,
and the errors a key of another type and an unreachable Redis give."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import trio

from pushtrio.contract.errors import BackendError, BackendMisconfigured
from pushtrio.stores.devices import (
    MAX_DEVICES_PER_USER,
    Device,
    DeviceRegistry,
    MemoryDevices,
    RedisDevices,
    TooManyDevices,
    devices_key,
)
from pushtrio.stores.redis_client import connect

from ..support.ports import closed_port

pytestmark = pytest.mark.integration

DEADLINE_S = 20.0


@pytest.fixture(params=["memory", "redis"])
def registry(request: pytest.FixtureRequest) -> DeviceRegistry:
    if request.param == "memory":
        return MemoryDevices()
    return RedisDevices(request.getfixturevalue("redis_client"))


async def test_put_tells_new_from_known_and_moves_a_token(registry: DeviceRegistry) -> None:
    with trio.fail_after(DEADLINE_S):
        assert await registry.put("u1", Device("fcm", "tok")) is True
        assert await registry.put("u1", Device("fcm", "tok")) is False
        assert await registry.put("u1", Device("apns", "tok")) is False
        assert await registry.devices("u1") == [Device("apns", "tok")]


async def test_devices_are_sorted_and_read_many_users_at_once(registry: DeviceRegistry) -> None:
    with trio.fail_after(DEADLINE_S):
        for user, device in [
            ("u1", Device("fcm", "b")),
            ("u1", Device("apns", "z")),
            ("u1", Device("fcm", "a")),
            ("u2", Device("firebase", "only")),
        ]:
            await registry.put(user, device)
        assert await registry.devices("u1") == [
            Device("apns", "z"),
            Device("fcm", "a"),
            Device("fcm", "b"),
        ]
        assert await registry.devices_many(["u2", "nobody", "u1", "u2"]) == {
            "u1": [Device("apns", "z"), Device("fcm", "a"), Device("fcm", "b")],
            "u2": [Device("firebase", "only")],
            "nobody": [],
        }
        assert await registry.devices_many([]) == {}


async def test_remove_says_whether_the_token_was_registered(registry: DeviceRegistry) -> None:
    with trio.fail_after(DEADLINE_S):
        await registry.put("u1", Device("fcm", "a"))
        await registry.put("u1", Device("fcm", "b"))
        await registry.put("u2", Device("fcm", "a"))
        assert await registry.remove("u1", "a") is True
        assert await registry.remove("u1", "a") is False
        assert await registry.remove("nobody", "a") is False
        assert await registry.devices("u2") == [Device("fcm", "a")]
        assert await registry.remove("u1", "b") is True
        assert await registry.devices("u1") == []
        assert await registry.put("u1", Device("apns", "b")) is True


async def test_the_device_limit_refuses_new_tokens_only(registry: DeviceRegistry) -> None:
    with trio.fail_after(DEADLINE_S):
        for i in range(MAX_DEVICES_PER_USER):
            assert await registry.put("u1", Device("fcm", f"t{i}")) is True
        with pytest.raises(TooManyDevices):
            await registry.put("u1", Device("fcm", "one-too-many"))
        assert await registry.put("u1", Device("apns", "t0")) is False
        devices = await registry.devices("u1")
        assert len(devices) == MAX_DEVICES_PER_USER
        assert Device("apns", "t0") in devices
        assert Device("fcm", "one-too-many") not in devices
        assert await registry.put("u2", Device("fcm", "one-too-many")) is True


async def test_the_key_is_a_hash_of_token_to_provider(redis_client: redis.Redis) -> None:
    registry = RedisDevices(redis_client)
    with trio.fail_after(DEADLINE_S):
        await registry.put("user:42@example.com", Device("fcm", "tok-a"))
        await registry.put("user:42@example.com", Device("apns", "tok:b"))
    key = "devices:user:42@example.com"
    assert devices_key("user:42@example.com") == key
    assert redis_client.type(key) == b"hash"
    assert redis_client.hgetall(key) == {b"tok-a": b"fcm", b"tok:b": b"apns"}
    assert redis_client.ttl(key) == -1  # registrations do not expire
    # Written by hand (another instance, an operator), read back as devices.
    redis_client.hset("devices:u9", mapping={"x": "firebase", "w": "apns"})
    with trio.fail_after(DEADLINE_S):
        assert await registry.devices("u9") == [Device("apns", "w"), Device("firebase", "x")]
        await registry.remove("user:42@example.com", "tok-a")
        await registry.remove("user:42@example.com", "tok:b")
    assert redis_client.exists(key) == 0  # the emptied user leaves no key behind


async def test_a_key_of_another_type_is_a_misconfiguration(redis_client: redis.Redis) -> None:
    registry = RedisDevices(redis_client)
    redis_client.set("devices:u1", "not a hash")
    with trio.fail_after(DEADLINE_S):
        with pytest.raises(BackendMisconfigured, match="WRONGTYPE"):
            await registry.put("u1", Device("fcm", "tok"))
        with pytest.raises(BackendMisconfigured, match="WRONGTYPE"):
            await registry.devices("u1")
        with pytest.raises(BackendMisconfigured, match="WRONGTYPE"):
            await registry.devices_many(["u2", "u1"])
        with pytest.raises(BackendMisconfigured, match="WRONGTYPE"):
            await registry.remove("u1", "tok")
    assert redis_client.get("devices:u1") == b"not a hash"  # left as it was


@pytest.fixture
def unreachable() -> Iterator[redis.Redis]:
    with closed_port() as port:
        client = connect(f"127.0.0.1:{port}", timeout_s=0.5)
        yield client
        client.close()


async def test_an_unreachable_redis_is_a_backend_error(unreachable: redis.Redis) -> None:
    registry = RedisDevices(unreachable)
    with trio.fail_after(DEADLINE_S):
        with pytest.raises(BackendError) as caught:
            await registry.devices_many(["u1"])
        assert not isinstance(caught.value, BackendMisconfigured)
        with pytest.raises(BackendError):
            await registry.put("u1", Device("fcm", "tok"))
