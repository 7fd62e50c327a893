"""MemoryDedup (ids remembered for exactly the TTL, then pruned), and the pure
arithmetic of RedisDedup's layout: digests, shards, time buckets."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest
import trio

from pushtrio.stores.dedup import DedupStore, MemoryDedup
from pushtrio.stores.dedup_layout import (
    BUCKETS_PER_TTL,
    CLOCK_MARGIN_S,
    LEVEL_STEP_BITS,
    MAX_SHARD_BITS,
    TARGET_IDS_PER_SET,
    BucketLayout,
    bits_for_volume,
    digest,
    level_bits,
    level_for,
    shard_of,
)

TTL_S = 60.0


async def test_remembered_ids_are_seen(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryDedup(TTL_S)
    assert await store.seen_many(["a", "b"]) == [False, False]
    await store.remember_many(["a", "c"])
    assert await store.seen_many(["a", "b", "c", "a"]) == [True, False, True, True]


async def test_ids_expire_exactly_at_the_ttl(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryDedup(TTL_S)
    start = trio.current_time()
    await store.remember_many(["a"])
    await trio.sleep_until(start + 20.0)
    await store.remember_many(["b"])

    await trio.sleep_until(start + TTL_S - 0.5)
    assert await store.seen_many(["a", "b"]) == [True, True]
    await trio.sleep_until(start + TTL_S)
    assert await store.seen_many(["a", "b"]) == [False, True]
    await trio.sleep_until(start + 20.0 + TTL_S)
    assert await store.seen_many(["a", "b"]) == [False, False]


async def test_remembering_again_renews_the_ttl(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryDedup(TTL_S)
    await store.remember_many(["a", "b"])
    await trio.sleep(TTL_S - 1.0)
    await store.remember_many(["a"])
    await trio.sleep(2.0)
    assert await store.seen_many(["a", "b"]) == [True, False]
    await trio.sleep(TTL_S)
    assert await store.seen_many(["a"]) == [False]


async def test_expired_ids_are_pruned_so_memory_stays_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryDedup(TTL_S)
    for batch in range(10):
        await store.remember_many([f"{batch}/{i}" for i in range(1000)])
        await trio.sleep(TTL_S / 4)
    # Only what was remembered within the last TTL is held.
    assert len(store) <= 4 * 1000
    await trio.sleep(TTL_S)
    await store.seen_many([])
    assert len(store) == 0


async def test_empty_batches_and_lifecycle(autojump_clock: trio.testing.MockClock) -> None:
    store: DedupStore = MemoryDedup(TTL_S)
    assert await store.seen_many([]) == []
    await store.remember_many([])
    await store.remember_many(["a"])
    await store.check()
    await store.aclose()
    assert await store.seen_many(["a"]) == [False]


async def test_cancelled_call_remembers_nothing(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryDedup(TTL_S)
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.remember_many(["a"])
    assert scope.cancelled_caught
    assert await store.seen_many(["a"]) == [False]


@pytest.mark.parametrize("ttl_s", [0.0, -1.0])
def test_rejects_bad_ttl(ttl_s: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        MemoryDedup(ttl_s)


# -- the Redis layout's arithmetic (pushtrio.stores.dedup_layout) -------------------------------

HOUR_MS = 3_600_000


def test_digest_is_two_halves_of_blake2b() -> None:
    raw = hashlib.blake2b(b"order-42", digest_size=16).digest()
    member, source = digest("order-42")
    assert member == int.from_bytes(raw[:8], "big", signed=True)
    assert source == int.from_bytes(raw[8:], "big")
    assert digest("order-42") == (member, source)
    assert digest("order-43") != (member, source)


def test_digests_fit_an_intset_and_spread() -> None:
    digests = [digest(f"id-{n}") for n in range(2000)]
    assert all(-(2**63) <= member < 2**63 for member, _ in digests)
    assert all(0 <= source < 2**64 for _, source in digests)
    assert len({member for member, _ in digests}) == 2000
    # Top bits pick the shard: 16 shards get about 125 ids each.
    counts = Counter(shard_of(source, 4) for _, source in digests)
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 200


def test_odd_strings_have_digests() -> None:
    assert digest("\ud800") != digest("")  # a lone surrogate does not raise


@pytest.mark.parametrize(
    ("source", "bits", "shard"),
    [(2**64 - 1, 0, 0), (2**64 - 1, 3, 7), (2**63, 1, 1), (2**63 - 1, 1, 0), (12345, 64, 12345)],
)
def test_shard_is_the_top_bits(source: int, bits: int, shard: int) -> None:
    assert shard_of(source, bits) == shard


@pytest.mark.parametrize(
    ("ids", "bits"),
    [(0, 0), (128, 0), (129, 1), (256, 1), (257, 2), (128 * 2**19, 19), (128 * 2**19 + 1, 20)],
)
def test_shard_bits_keep_sets_near_the_target(ids: int, bits: int) -> None:
    assert bits_for_volume(ids) == bits
    if ids:
        assert TARGET_IDS_PER_SET / 2 < ids / 2**bits <= TARGET_IDS_PER_SET or bits == 0


def test_shard_bits_are_capped() -> None:
    assert bits_for_volume(1e15) == MAX_SHARD_BITS


def test_layout_widths() -> None:
    day = BucketLayout.for_ttl(86_400.0)
    assert day == BucketLayout(
        ttl_ms=86_400_000,
        width_ms=86_400_000 // BUCKETS_PER_TTL,
        margin_ms=round(CLOCK_MARGIN_S * 1000),
    )
    assert BucketLayout.for_ttl(3600.0, 0.0, 4).width_ms == 900_000
    assert BucketLayout.for_ttl(0.001, 0.0).width_ms == 1
    # Never narrower than the margin: a short TTL does not mean many buckets to ask.
    assert BucketLayout.for_ttl(1.0, 5.0).width_ms == 5000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl_s": 0.0},
        {"ttl_s": -1.0},
        {"ttl_s": 1.0, "margin_s": -1.0},
        {"ttl_s": 1.0, "buckets_per_ttl": 0},
    ],
)
def test_layout_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        BucketLayout.for_ttl(**kwargs)  # type: ignore[arg-type]


def test_live_buckets_away_from_and_near_a_boundary() -> None:
    layout = BucketLayout.for_ttl(86_400.0, 5.0, 2)
    width = layout.width_ms
    middle = 1000 * width + width // 2
    assert layout.live_buckets(middle) == range(998, 1001)
    # Within the margin of the next bucket: it may already hold ids of an
    # instance whose clock is ahead.
    assert layout.live_buckets(1001 * width - 1000) == range(998, 1002)
    # Just into a bucket: the oldest one is still alive for the margin.
    assert layout.live_buckets(1001 * width + 1000) == range(998, 1002)
    assert layout.live_buckets(1001 * width + 6000) == range(999, 1002)


@pytest.mark.parametrize("buckets_per_ttl", [1, 2, 4])
@pytest.mark.parametrize("ttl_s", [0.3, 7.0, 3600.0, 86_400.0])
def test_an_id_is_remembered_for_the_ttl_and_at_most_a_bucket_more(
    ttl_s: float, buckets_per_ttl: int
) -> None:
    layout = BucketLayout.for_ttl(ttl_s, 5.0, buckets_per_ttl)
    ttl, width, margin = layout.ttl_ms, layout.width_ms, layout.margin_ms
    rng = random.Random(8)
    start = 1_764_000_000_000
    recorded = [start + rng.randrange(4 * width) for _ in range(300)]
    # Bucket edges, where off-by-one errors live.
    recorded += [start + k * width + d for k in range(1, 4) for d in (-1, 0, 1)]
    for at in recorded:
        # Views of Redis's clock that differ by up to the margin: the recording
        # instance's, then the looking-up instance's.
        for error in (-margin // 2, 0, margin // 2):
            bucket = layout.bucket_of(at + error)
            expires = layout.expire_at_ms(bucket)
            assert expires >= at + ttl  # never shorter
            assert expires <= at + ttl + width + 2 * margin  # at most a bucket more
            # Every look-up within the TTL, by a clock off the other way, asks it.
            for age in (0, 1, ttl // 2, ttl - 1, *rng.sample(range(ttl), 3)):
                for look_error in (-margin // 2, 0, margin // 2):
                    now = at + age + look_error
                    assert bucket in layout.live_buckets(now)
                    assert len(layout.live_buckets(now)) <= buckets_per_ttl + 3


def test_proposals_follow_the_volume() -> None:
    layout = BucketLayout.for_ttl(86_400.0, 5.0, 2)
    width = layout.width_ms
    now = 1000 * width + width // 10  # early in bucket 1000
    # A fresh store starts with one set; levels grow from there.
    assert layout.propose_bits(1000, now, {}) == 0
    assert layout.propose_bits(1000, now, {998: 0, 999: 0}) == 0
    assert layout.propose_bits(1000, now, {999: 128 * 2**10}) == 10
    assert layout.propose_bits(1000, now, {998: 128 * 2**12, 999: 128 * 2**10}) == 12
    assert layout.propose_bits(1000, now, {997: 128 * 2**15, 999: 128}) == 0
    # Too early in the bucket for its pace to count...
    assert layout.propose_bits(1001, now, {999: 128, 1000: 128 * 2**8}) == 8
    # ...and projected to a whole bucket once a quarter is past.
    half = 1000 * width + width // 2
    assert layout.propose_bits(1001, half, {999: 128, 1000: 128 * 2**8}) == 9


def test_levels_follow_the_count() -> None:
    target = TARGET_IDS_PER_SET
    assert [level_for(n, 0) for n in (0, 1, target)] == [0, 0, 0]
    # Past one set's worth, the next level has 2**LEVEL_STEP_BITS sets...
    assert level_for(target + 1, 0) == 1
    assert level_for(target * 2**LEVEL_STEP_BITS, 0) == 1
    assert level_for(target * 2**LEVEL_STEP_BITS + 1, 0) == 2
    # ...and a bucket sized for its volume stays at level 0.
    assert level_for(target * 2**10, 10) == 0
    assert level_for(target * 2**10 + 1, 10) == 1
    # The top level reaches MAX_SHARD_BITS and no further.
    top = level_for(2**62, 0)
    assert level_bits(0, top) == MAX_SHARD_BITS
    assert level_bits(0, top - 1) < MAX_SHARD_BITS
    assert level_bits(7, 0) == 7
    assert level_bits(7, 1) == 7 + LEVEL_STEP_BITS


def test_at_each_level_sets_stay_near_the_target() -> None:
    """Ids written while a level is current fill its sets to at most the target."""
    for base in (0, 3, 10):
        for level in range(1, 4):
            first = TARGET_IDS_PER_SET * 2 ** level_bits(base, level - 1) + 1
            last = TARGET_IDS_PER_SET * 2 ** level_bits(base, level)
            assert level_for(first, base) == level_for(last, base) == level
            assert (last - first) / 2 ** level_bits(base, level) <= TARGET_IDS_PER_SET


def test_key_names() -> None:
    layout = BucketLayout.for_ttl(3600.0, 5.0, 4)
    assert layout.meta_key(12) == b"dedup:900000:12"
    assert layout.set_key(12, 3) == b"dedup:900000:12:3"
    assert layout.set_key(12, 3, level=2) == b"dedup:900000:12:2:3"
    assert layout.expire_at_ms(12) == 13 * 900_000 + HOUR_MS + 5000
