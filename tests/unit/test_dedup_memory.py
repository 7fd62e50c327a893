"""MemoryDedup: delivered ids are remembered for exactly the TTL, then pruned."""

from __future__ import annotations

import pytest
import trio

from pushtrio.dedup import DedupStore, MemoryDedup

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
