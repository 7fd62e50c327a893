"""RedisDedup against the real test Redis: keys, TTL, expiry and errors."""

from __future__ import annotations

import socket

import pytest
import redis
import trio

from pushtrio.config import Settings
from pushtrio.dedup import DedupStore, RedisDedup, dedup_key
from pushtrio.errors import BackendError
from pushtrio.redis_client import connect

pytestmark = pytest.mark.integration

DEADLINE_S = 20.0


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


async def test_remembered_ids_are_seen(client: redis.Redis) -> None:
    store: DedupStore = RedisDedup(client, ttl_s=3600.0)
    with trio.fail_after(DEADLINE_S):
        assert await store.seen_many(["a", "b"]) == [False, False]
        await store.remember_many(["a", "c"])
        assert await store.seen_many(["a", "b", "c", "a"]) == [True, False, True, True]


async def test_keys_carry_the_ttl(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=3600.0)
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(["msg-1"])
    assert dedup_key("msg-1") == "dedup:msg-1"
    assert client.exists(b"dedup:msg-1") == 1
    assert 3_599_000 < client.pttl(b"dedup:msg-1") <= 3_600_000


async def test_ids_are_forgotten_after_a_short_ttl(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=0.3)
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(["short"])
        assert await store.seen_many(["short"]) == [True]
        assert 0 < client.pttl(dedup_key("short")) <= 300
        # Redis expires the key by its own clock, which nothing here can wait on: poll.
        while True:
            if await store.seen_many(["short"]) == [False]:
                break
            await trio.sleep(0.01)


async def test_large_batches_take_one_call(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=60.0)
    ids = [f"id-{n}" for n in range(5000)]
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(ids[::2])
        seen = await store.seen_many(ids)
    assert seen == [n % 2 == 0 for n in range(5000)]


async def test_empty_batches_and_lifecycle(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=60.0)
    with trio.fail_after(DEADLINE_S):
        assert await store.seen_many([]) == []
        await store.remember_many([])
        await store.check()
        await store.aclose()


async def test_unreachable_redis_is_a_backend_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = connect(Settings(redis_addr=f"127.0.0.1:{port}"))
    store = RedisDedup(client, ttl_s=60.0)
    try:
        with trio.fail_after(DEADLINE_S):
            with pytest.raises(BackendError) as caught:
                await store.seen_many(["a"])
            assert isinstance(caught.value.__cause__, redis.ConnectionError)
            with pytest.raises(BackendError):
                await store.remember_many(["a"])
            with pytest.raises(BackendError):
                await store.check()
    finally:
        client.close()


def test_rejects_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        RedisDedup(redis.Redis(), ttl_s=0.0)
