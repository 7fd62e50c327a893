"""RedisDedup against the real test Redis: buckets, expiry, round trips, keys and errors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

import pushtrio.stores.dedup
from pushtrio.contract.errors import BackendError
from pushtrio.stores.dedup import DedupStore, RedisDedup
from pushtrio.stores.dedup_layout import (
    TARGET_IDS_PER_SET,
    BucketLayout,
    digest,
    level_bits,
    level_for,
    shard_of,
)
from pushtrio.stores.redis_client import connect, execute_many

from ..support.ports import closed_port
from .private_services import PrivateRedis

pytestmark = pytest.mark.integration

DEADLINE_S = 20.0
HOUR_S = 3600.0


class FakeClock:
    """Seconds since the epoch, moved by hand; starts at the real time so that the
    absolute expiries the store sets stay in Redis's future."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class RoundTrips:
    """Every command list RedisDedup sends, one entry per round trip."""

    def __init__(self) -> None:
        self.trips: list[list[Sequence[Any]]] = []

    def __call__(self, client: redis.Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
        self.trips.append(list(commands))
        return execute_many(client, commands)


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    spy = RoundTrips()
    monkeypatch.setattr(pushtrio.stores.dedup, "execute_many", spy)
    return spy


def keys_of(client: redis.Redis, layout: BucketLayout, bucket: int | None = None) -> list[bytes]:
    """The keys of ``layout`` (of one bucket when given) in the test Redis."""
    prefix = b"dedup:%d:" % layout.width_ms if bucket is None else layout.meta_key(bucket)
    return sorted(client.scan_iter(match=prefix + b"*", count=1000))


async def test_remembered_ids_are_seen(client: redis.Redis) -> None:
    store: DedupStore = RedisDedup(client, ttl_s=HOUR_S)
    with trio.fail_after(DEADLINE_S):
        assert await store.seen_many(["a", "b"]) == [False, False]
        await store.remember_many(["a", "c"])
        assert await store.seen_many(["a", "b", "c", "a"]) == [True, False, True, True]


async def test_a_second_instance_sees_the_ids(client: redis.Redis) -> None:
    first, second = RedisDedup(client, ttl_s=HOUR_S), RedisDedup(client, ttl_s=HOUR_S)
    ids = [f"id-{n}" for n in range(1000)]
    with trio.fail_after(DEADLINE_S):
        await first.remember_many(ids[:500])
        assert await second.seen_many(ids) == [n < 500 for n in range(1000)]


async def test_keys_are_sets_and_a_hash_that_expire_with_their_bucket(client: redis.Redis) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
    layout = store.layout
    with trio.fail_after(DEADLINE_S):
        await store.remember_many([f"msg-{n}" for n in range(300)])
    bucket = layout.bucket_of(int(clock.now * 1000))
    meta = layout.meta_key(bucket)
    keys = keys_of(client, layout, bucket)
    assert meta in keys
    assert client.type(meta) == b"hash"
    bits = int(client.hget(meta, "bits") or -1)
    assert int(client.hget(meta, "ids") or -1) == 300
    sets = [key for key in keys if key != meta]
    assert bits == 0  # a fresh store: one set at level 0, 32 at level 1 (past 128 ids)
    assert 0 < len(sets) <= 2 ** level_bits(bits, level_for(300, bits))
    assert all(key.startswith(meta + b":") for key in sets)
    assert sum(client.scard(key) for key in sets) == 300
    assert {client.object("encoding", key) for key in sets} == {b"intset"}
    # One expiry for every key of the bucket: at least the TTL after the bucket ends.
    expected_ms = layout.expire_at_ms(bucket) - time.time() * 1000
    for key in keys:
        assert expected_ms - 2000 < client.pttl(key) <= expected_ms + 2000


async def test_ids_stay_seen_across_buckets_for_the_ttl(client: redis.Redis) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock, clock_margin_s=1.0)
    width_s = store.layout.width_ms / 1000
    start = clock.now
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(["early"])
        clock.now = start + width_s  # the next bucket
        await store.remember_many(["later"])
        assert await store.seen_many(["early", "later", "never"]) == [True, True, False]
        clock.now = start + HOUR_S - 0.01
        assert await store.seen_many(["early", "later"]) == [True, True]
        # Past the TTL plus a bucket and the margin, the old bucket is no longer asked.
        clock.now = start + HOUR_S + width_s + 1.01
        assert await store.seen_many(["early", "later"]) == [False, True]
        clock.now = start + width_s + HOUR_S + width_s + 1.01
        assert await store.seen_many(["early", "later"]) == [False, False]


async def test_remembering_again_renews(client: redis.Redis) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock, clock_margin_s=1.0)
    start = clock.now
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(["a", "b"])
        clock.now = start + HOUR_S - 1.0
        await store.remember_many(["a"])
        clock.now = start + 2 * HOUR_S
        assert await store.seen_many(["a", "b"]) == [True, False]


async def test_ids_are_forgotten_after_a_short_ttl(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=0.3, clock_margin_s=0.05)
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(["short"])
        assert await store.seen_many(["short"]) == [True]
        # The next bucket's hash may be made already: two buckets, the TTL, the margin,
        # and 100 ms for a loaded machine.
        longest_ms = 2 * store.layout.width_ms + 300 + 50 + 100
        # -2: the key expired between listing it and asking (a loaded machine); -1
        # (no expiry) and anything beyond the longest life fail.
        pttls = [client.pttl(key) for key in keys_of(client, store.layout)]
        assert all(p == -2 or 0 < p <= longest_ms for p in pttls), pttls
        # Redis expires the keys by its own clock, which nothing here can wait on: poll.
        while True:
            if not keys_of(client, store.layout):
                break
            await trio.sleep(0.01)
        assert await store.seen_many(["short"]) == [False]


async def test_a_look_up_over_many_buckets_is_one_round_trip(
    client: redis.Redis, trips: RoundTrips
) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock, buckets_per_ttl=4)
    width_s = store.layout.width_ms / 1000
    ids = [f"id-{n}" for n in range(500)]
    with trio.fail_after(DEADLINE_S):
        for part in range(4):  # a quarter of the ids in each of four buckets
            await store.remember_many(ids[part::8])
            clock.now += width_s
        clock.now -= width_s
        trips.trips.clear()
        seen = await store.seen_many(ids)
    assert seen == [n % 8 < 4 for n in range(500)]
    assert len(trips.trips) == 1
    [commands] = trips.trips
    names = [command[0] for command in commands]
    assert names.count(b"HMGET") == len(store.layout.live_buckets(int(clock.now * 1000)))
    # Each of the four buckets holding ids is asked, at level 0 (125 ids each); a
    # live bucket known to hold none is not.
    assert names.count(b"SISMEMBER") == 500 * 4


async def test_a_record_is_one_round_trip(client: redis.Redis, trips: RoundTrips) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(["warm-up"])  # the bucket's shard count is now known
        trips.trips.clear()
        await store.remember_many([f"id-{n}" for n in range(500)])
        await store.remember_many([f"id-{n}" for n in range(500, 1000)])
    assert len(trips.trips) == 2


async def test_time_comes_from_redis_once_then_rides_along(
    client: redis.Redis, trips: RoundTrips
) -> None:
    store = RedisDedup(client, ttl_s=HOUR_S)
    with trio.fail_after(DEADLINE_S):
        await store.seen_many(["a"])
        await store.remember_many(["a"])
        await store.seen_many(["a"])
    assert [trip[0][0] for trip in trips.trips] == [b"TIME"] * len(trips.trips)
    assert trips.trips[0] == [(b"TIME",)]  # asked alone before the first call only
    assert len(trips.trips) <= 4


async def test_every_command_names_at_most_one_key(client: redis.Redis, trips: RoundTrips) -> None:
    store = RedisDedup(client, ttl_s=HOUR_S)
    ids = [f"id-{n}" for n in range(300)]
    with trio.fail_after(DEADLINE_S):
        await store.seen_many(ids)
        await store.remember_many(ids)
        await store.seen_many(ids)
    commands = {tuple(command) for trip in trips.trips for command in trip}
    assert {command[0] for command in commands} >= {b"TIME", b"HMGET", b"SISMEMBER", b"SADD"}
    commands.discard((b"TIME",))  # no arguments, no key
    replies = execute_many(client, [(b"COMMAND", b"GETKEYS", *command) for command in commands])
    for command, keys in zip(commands, replies, strict=True):
        assert not isinstance(keys, Exception), (command, keys)
        assert len(keys) == 1, command


async def test_instances_agree_on_a_bucket_fixed_by_another(
    client: redis.Redis, trips: RoundTrips
) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
    bucket = store.layout.bucket_of(int(clock.now * 1000))
    # Another instance fixed this bucket at 3 shard bits, not what this one proposes.
    client.hset(store.layout.meta_key(bucket), "bits", 3)
    ids = [f"id-{n}" for n in range(200)]
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(ids)
        assert len(trips.trips) == 2  # recorded again with the stored choice
        fresh = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
        assert await fresh.seen_many([*ids, "other"]) == [True] * 200 + [False]
    for message_id in ids:
        member, source = digest(message_id)
        assert client.sismember(store.layout.set_key(bucket, shard_of(source, 3)), str(member))


async def test_a_bucket_hash_holding_garbage_is_a_backend_error(client: redis.Redis) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
    client.hset(store.layout.meta_key(store.layout.bucket_of(int(clock.now * 1000))), "bits", "x")
    with trio.fail_after(DEADLINE_S):
        with pytest.raises(BackendError, match="not a count"):
            await store.seen_many(["a"])
        with pytest.raises(BackendError, match="not a count"):
            await store.remember_many(["a"])


async def test_large_batches_take_one_call(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=60.0)
    ids = [f"id-{n}" for n in range(5000)]
    with trio.fail_after(DEADLINE_S):
        await store.remember_many(ids[::2])
        seen = await store.seen_many(ids)
    assert seen == [n % 2 == 0 for n in range(5000)]


async def test_sets_stay_compact_at_the_target_fill(client: redis.Redis) -> None:
    clock = FakeClock()
    store = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
    layout: BucketLayout = store.layout
    bucket = layout.bucket_of(int(clock.now * 1000))
    # As if the bucket before held 16 sets' worth of ids.
    client.hset(layout.meta_key(bucket - 1), mapping={"bits": 4, "ids": 16 * TARGET_IDS_PER_SET})
    client.pexpire(layout.meta_key(bucket - 1), 60_000)
    with trio.fail_after(DEADLINE_S):
        await store.seen_many(["learn the counts"])
        for part in range(4):
            await store.remember_many([f"{part}-{n}" for n in range(500)])
    sets = [key for key in keys_of(client, layout, bucket) if key != layout.meta_key(bucket)]
    assert len(sets) == 16
    assert {client.object("encoding", key) for key in sets} == {b"intset"}


async def test_a_fresh_store_grows_levels_and_stays_small(client: redis.Redis) -> None:
    """From one set, the levels follow the count: every id is found (also by an
    instance that has seen no count yet), sets stay intsets, keys stay few."""
    clock = FakeClock()
    writer = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
    layout = writer.layout
    bucket = layout.bucket_of(int(clock.now * 1000))
    ids = [f"quiet-{n}" for n in range(20_000)]
    with trio.fail_after(DEADLINE_S):
        for start in range(0, len(ids), 500):
            await writer.remember_many(ids[start : start + 500])
        reader = RedisDedup(client, ttl_s=HOUR_S, clock=clock)
        assert await reader.seen_many([*ids[::97], "never"]) == [True] * len(ids[::97]) + [False]
    meta = layout.meta_key(bucket)
    assert client.hget(meta, "bits") == b"0"  # no cold-start guess
    sets = [key for key in keys_of(client, layout, bucket) if key != meta]
    # dedup:<w>:<b>:<shard> at level 0, dedup:<w>:<b>:<level>:<shard> above; the
    # first batch (500 ids) is already past level 0's one set.
    levels = {int(key.split(b":")[3]) if key.count(b":") == 4 else 0 for key in sets}
    assert levels == {1, 2}
    assert len(sets) <= len(ids) // 16
    assert {client.object("encoding", key) for key in sets} == {b"intset"}
    assert sum(client.scard(key) for key in sets) == len(ids)


async def test_empty_batches_and_lifecycle(client: redis.Redis) -> None:
    store = RedisDedup(client, ttl_s=60.0)
    with trio.fail_after(DEADLINE_S):
        assert await store.seen_many([]) == []
        await store.remember_many([])
        await store.check()
        await store.aclose()


async def test_out_of_memory_refuses_records_and_look_ups(tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    client = connect(private.addr)
    try:
        store = RedisDedup(client, ttl_s=HOUR_S)
        with trio.fail_after(DEADLINE_S):
            await store.remember_many(["before"])
            client.config_set("maxmemory", 1)  # noeviction is the default policy
            # A look-up fails too, so the pipeline delivers nothing it could not record.
            for call in (store.remember_many(["during"]), store.seen_many(["before"])):
                with pytest.raises(BackendError, match="OutOfMemoryError") as caught:
                    await call
                assert isinstance(caught.value.__cause__, redis.exceptions.OutOfMemoryError)
            client.config_set("maxmemory", 0)
            await store.remember_many(["during"])
            assert await store.seen_many(["before", "during", "after"]) == [True, True, False]
    finally:
        client.close()
        private.close()


async def test_unreachable_redis_is_a_backend_error() -> None:
    with closed_port() as port:
        client = connect(f"127.0.0.1:{port}")
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


@pytest.mark.parametrize("kwargs", [{"ttl_s": 0.0}, {"ttl_s": 1.0, "buckets_per_ttl": 0}])
def test_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RedisDedup(redis.Redis(), **kwargs)
