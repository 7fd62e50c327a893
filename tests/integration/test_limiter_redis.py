"""RedisLimiter against the real test Redis: exactness, the sliding edge, errors."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import redis
import trio

from pushtrio.config import Settings
from pushtrio.contract.errors import BackendError
from pushtrio.stores.limiter.redis import RedisLimiter, rate_limit_key
from pushtrio.stores.redis_client import connect

from ..support.ports import closed_port

pytestmark = pytest.mark.integration

DEADLINE_S = 20.0


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


def _server_time_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


async def test_many_users_in_one_batch_are_exact(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=5, window_s=60.0)
    users = [f"user-{n}" for n in range(200)]
    requests = [(user, f"{user}/{i}") for i in range(10) for user in users]
    with trio.fail_after(DEADLINE_S):
        decisions = await limiter.acquire_many(requests)

    allowed = [request for request, ok in zip(requests, decisions, strict=True) if ok]
    assert len(allowed) == 1000
    for user in users:
        assert [m for u, m in allowed if u == user] == [f"{user}/{i}" for i in range(5)]
    assert client.zcard(rate_limit_key("user-0")) == 5


async def test_key_is_a_sorted_set_of_message_ids_with_a_ttl(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=3, window_s=30.0)
    with trio.fail_after(DEADLINE_S):
        before_us = _server_time_us(client)
        assert await limiter.acquire_many([("alice", "m1"), ("alice", "m2")]) == [True, True]
        after_us = _server_time_us(client)

    key = b"rate_limit:alice"
    assert client.type(key) == b"zset"
    entries = sorted((float(score), bytes(member)) for member, score in client.zscan_iter(key))
    assert [member for _, member in entries] == [b"m1", b"m2"]
    for score, _ in entries:
        # Redis server time in whole microseconds, not a rounded float.
        assert score == int(score)
        assert before_us <= score <= after_us
    assert 29_000 < client.pttl(key) <= 30_001


async def test_entries_older_than_the_window_do_not_count(client: redis.Redis) -> None:
    # Seed the log by Redis's own clock: one entry inside the window, one outside.
    limiter = RedisLimiter(client, limit=2, window_s=10.0)
    key = rate_limit_key("bob")
    now_us = _server_time_us(client)
    client.zadd(key, {"inside": now_us - 9_000_000, "outside": now_us - 10_500_000})
    with trio.fail_after(DEADLINE_S):
        status = await limiter.status("bob")
        assert (status.used, status.remaining) == (1, 1)
        assert 0.5 < status.reset_in_s <= 1.0
        assert await limiter.acquire_many([("bob", "new"), ("bob", "more")]) == [True, False]
    assert client.zscore(key, "outside") is None


async def test_slot_frees_when_the_oldest_entry_leaves_a_short_window(
    client: redis.Redis,
) -> None:
    limiter = RedisLimiter(client, limit=2, window_s=0.3)
    with trio.fail_after(DEADLINE_S):
        assert await limiter.acquire_many([("carol", "m1"), ("carol", "m2")]) == [True, True]
        assert await limiter.acquire_many([("carol", "m3")]) == [False]
        status = await limiter.status("carol")
        assert status.remaining == 0
        assert 0 < status.reset_in_s <= 0.3

        # The window slides by Redis's clock, which nothing here can wait on: poll.
        while True:
            if (await limiter.status("carol")).remaining > 0:
                break
            await trio.sleep(0.01)
        assert await limiter.acquire_many([("carol", "m3")]) == [True]


async def test_status_and_reset(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=5, window_s=60.0)
    with trio.fail_after(DEADLINE_S):
        empty = await limiter.status("dave")
        assert (empty.used, empty.remaining, empty.reset_in_s) == (0, 5, 0.0)
        assert (empty.limit, empty.window_s, empty.user_id) == (5, 60.0, "dave")

        await limiter.acquire_many([("dave", f"m{i}") for i in range(3)])
        status = await limiter.status("dave")
        assert (status.used, status.remaining) == (3, 2)
        assert 59.0 < status.reset_in_s <= 60.0

        await limiter.reset("dave")
        assert client.exists(rate_limit_key("dave")) == 0
        assert (await limiter.status("dave")).used == 0
        assert await limiter.acquire_many([("dave", "m9")]) == [True]


async def test_message_id_in_window_is_allowed_again_without_a_second_slot(
    client: redis.Redis,
) -> None:
    limiter = RedisLimiter(client, limit=2, window_s=60.0)
    with trio.fail_after(DEADLINE_S):
        assert await limiter.acquire_many([("erin", "m1"), ("erin", "m1")]) == [True, True]
        assert (await limiter.status("erin")).used == 1
        decisions = await limiter.acquire_many([("erin", "m2"), ("erin", "m3"), ("erin", "m1")])
        assert decisions == [True, False, True]
        assert (await limiter.status("erin")).used == 2


async def test_two_clients_at_once_stay_exact(redis_addr: str) -> None:
    settings = Settings(redis_addr=redis_addr)
    clients = [connect(settings.redis_addr), connect(settings.redis_addr)]
    limit = 7
    users = [f"user-{n}" for n in range(40)]
    allowed: Counter[str] = Counter()

    async def hammer(limiter: RedisLimiter, name: str) -> None:
        for batch in range(15):
            requests = [(user, f"{name}/{batch}/{i}") for user in users for i in range(2)]
            decisions = await limiter.acquire_many(requests)
            allowed.update(user for (user, _), ok in zip(requests, decisions, strict=True) if ok)

    try:
        with trio.fail_after(DEADLINE_S):
            async with trio.open_nursery() as nursery:
                for n, client in enumerate(clients):
                    for worker in range(3):
                        limiter = RedisLimiter(client, limit=limit, window_s=60.0)
                        nursery.start_soon(hammer, limiter, f"c{n}w{worker}")
    finally:
        for client in clients:
            client.close()
    assert allowed == dict.fromkeys(users, limit)


async def test_script_is_reloaded_when_redis_lost_it(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=1, window_s=60.0)
    with trio.fail_after(DEADLINE_S):
        assert await limiter.acquire_many([("frank", "m1")]) == [True]
        client.script_flush()
        assert await limiter.acquire_many([("frank", "m2"), ("frank", "m1")]) == [False, True]
        client.script_flush()
        assert (await limiter.status("frank")).used == 1


async def test_empty_batch_needs_no_round_trip(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=1, window_s=60.0)
    assert await limiter.acquire_many([]) == []
    await limiter.check()
    await limiter.aclose()


async def test_wrong_type_key_is_a_backend_error(client: redis.Redis) -> None:
    client.set(rate_limit_key("grace"), b"not a sorted set")
    limiter = RedisLimiter(client, limit=1, window_s=60.0)
    with trio.fail_after(DEADLINE_S), pytest.raises(BackendError) as caught:
        await limiter.acquire_many([("ok", "m1"), ("grace", "m1")])
    assert isinstance(caught.value.__cause__, redis.ResponseError)


async def test_unreachable_redis_is_a_backend_error() -> None:
    with closed_port() as port:
        client = connect(f"127.0.0.1:{port}")
        limiter = RedisLimiter(client, limit=1, window_s=60.0)
        try:
            with trio.fail_after(DEADLINE_S):
                with pytest.raises(BackendError) as caught:
                    await limiter.acquire_many([(uuid.uuid4().hex, "m1")])
                assert isinstance(caught.value.__cause__, redis.ConnectionError)
                with pytest.raises(BackendError):
                    await limiter.status("u")
                with pytest.raises(BackendError):
                    await limiter.reset("u")
                with pytest.raises(BackendError):
                    await limiter.check()
        finally:
            client.close()


# decide_many: the same decisions, and for a refusal the wait until a slot frees.


async def test_decide_many_waits_until_the_oldest_entry_leaves_by_redis_time(
    client: redis.Redis,
) -> None:
    # Seed the log by Redis's own clock, so the expected wait is known to the microsecond.
    window_us = 10_000_000
    limiter = RedisLimiter(client, limit=2, window_s=window_us / 1_000_000)
    key = rate_limit_key("heidi")
    seeded_us = _server_time_us(client)
    oldest_us, newer_us = seeded_us - 9_000_000, seeded_us - 4_000_000
    client.zadd(key, {"oldest": oldest_us, "newer": newer_us, "gone": seeded_us - 10_500_000})
    with trio.fail_after(DEADLINE_S):
        before_us = _server_time_us(client)
        waits = await limiter.decide_many([("heidi", "m1"), ("heidi", "newer")])
        after_us = _server_time_us(client)

    wait_us = round(waits[0] * 1_000_000)
    assert waits[0] == wait_us / 1_000_000
    assert oldest_us + window_us + 1 - after_us <= wait_us <= oldest_us + window_us + 1 - before_us
    assert waits[1] == 0.0
    assert client.zcard(key) == 2


async def test_decide_many_refusal_wait_frees_the_slot_of_a_short_window(
    client: redis.Redis,
) -> None:
    limiter = RedisLimiter(client, limit=2, window_s=0.3)
    with trio.fail_after(DEADLINE_S):
        waits = await limiter.decide_many([("ivan", "m1"), ("ivan", "m2"), ("ivan", "m3")])
        assert waits[:2] == [0.0, 0.0]
        assert 0.0 < waits[2] <= (300_000 + 1) / 1_000_000

        # Sleeping for the wait is the behaviour under test: then the slot is free.
        await trio.sleep(waits[2])
        assert await limiter.decide_many([("ivan", "m3")]) == [0.0]
        # m2 may have left by now too (it came microseconds after m1): m5 is refused.
        *_, wait = await limiter.decide_many([("ivan", "m4"), ("ivan", "m5")])
        assert 0.0 < wait <= (300_000 + 1) / 1_000_000


async def test_decide_many_for_a_message_id_already_in_the_window_is_zero(
    client: redis.Redis,
) -> None:
    limiter = RedisLimiter(client, limit=2, window_s=60.0)
    with trio.fail_after(DEADLINE_S):
        assert await limiter.decide_many([("judy", "m1"), ("judy", "m2")]) == [0.0, 0.0]
        waits = await limiter.decide_many([("judy", "m3"), ("judy", "m1"), ("judy", "m2")])
        assert 59.0 < waits[0] <= 60.000001
        assert waits[1:] == [0.0, 0.0]
        assert (await limiter.status("judy")).used == 2


async def test_decide_many_and_acquire_many_share_one_window(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=2, window_s=60.0)
    with trio.fail_after(DEADLINE_S):
        assert await limiter.acquire_many([("kim", "m1")]) == [True]
        assert await limiter.decide_many([("kim", "m2")]) == [0.0]
        assert await limiter.acquire_many([("kim", "m3"), ("kim", "m2")]) == [False, True]
        [wait] = await limiter.decide_many([("kim", "m3")])
        assert 59.0 < wait <= 60.000001
        assert client.zcard(rate_limit_key("kim")) == 2


async def test_decide_many_over_a_lowered_limit_waits_until_it_is_under_the_limit(
    client: redis.Redis,
) -> None:
    window_us = 10_000_000
    limiter = RedisLimiter(client, limit=1, window_s=window_us / 1_000_000)
    key = rate_limit_key("leo")
    seeded_us = _server_time_us(client)
    # Three entries (as if another process had a limit of 3): one slot frees once
    # all three have left, i.e. when the newest does.
    client.zadd(key, {"a": seeded_us - 9_000_000, "b": seeded_us - 5_000_000, "c": seeded_us})
    with trio.fail_after(DEADLINE_S):
        [wait] = await limiter.decide_many([("leo", "new")])
        after_us = _server_time_us(client)
    assert seeded_us + window_us + 1 - after_us <= round(wait * 1_000_000)
    assert wait <= (window_us + 1) / 1_000_000


async def test_decide_many_after_redis_lost_the_script(client: redis.Redis) -> None:
    limiter = RedisLimiter(client, limit=1, window_s=60.0)
    with trio.fail_after(DEADLINE_S):
        client.script_flush()
        assert await limiter.decide_many([("mallory", "m1")]) == [0.0]
        client.script_flush()
        waits = await limiter.decide_many([("mallory", "m2"), ("mallory", "m1")])
        assert 59.0 < waits[0] <= 60.000001
        assert waits[1] == 0.0
        assert await limiter.decide_many([]) == []
