"""MemoryLimiter: the exact sliding-window rules, checked on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

from pushtrio.limiter import LimitStatus
from pushtrio.limiter.memory import MemoryLimiter

WINDOW_S = 10.0


async def test_limit_reached_then_denied(autojump_clock: trio.testing.MockClock) -> None:
    limiter = MemoryLimiter(limit=3, window_s=WINDOW_S)
    requests = [("u", f"m{i}") for i in range(5)]
    assert await limiter.acquire_many(requests) == [True, True, True, False, False]
    assert await limiter.acquire_many([("u", "m9")]) == [False]
    assert (await limiter.status("u")).used == 3


async def test_slot_frees_only_once_entry_is_strictly_older_than_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=3, window_s=WINDOW_S)
    start = trio.current_time()
    for i, offset in enumerate([0.0, 4.0, 7.0]):
        await trio.sleep_until(start + offset)
        assert await limiter.acquire_many([("u", f"m{i}")]) == [True]

    # At exactly start + window the first entry's age equals the window: it counts.
    await trio.sleep_until(start + WINDOW_S)
    assert await limiter.acquire_many([("u", "edge")]) == [False]

    # Any later instant, it has left: exactly one slot frees.
    await trio.sleep_until(start + WINDOW_S + 0.5)
    assert await limiter.acquire_many([("u", "a"), ("u", "b")]) == [True, False]

    # The entry taken at start + 4 still counts at start + 14, not after.
    await trio.sleep_until(start + 4.0 + WINDOW_S)
    assert await limiter.acquire_many([("u", "c")]) == [False]
    await trio.sleep_until(start + 4.0 + WINDOW_S + 0.25)
    assert await limiter.acquire_many([("u", "c")]) == [True]


async def test_message_id_in_window_is_allowed_again_without_a_second_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    assert await limiter.acquire_many([("u", "m1"), ("u", "m1")]) == [True, True]
    assert (await limiter.status("u")).used == 1
    assert await limiter.acquire_many([("u", "m2"), ("u", "m3"), ("u", "m1")]) == [
        True,
        False,
        True,
    ]
    # The re-read keeps its original time: it does not renew the slot.
    await trio.sleep(WINDOW_S + 0.5)
    assert (await limiter.status("u")).used == 0
    # Once it has left the window, the same id takes a fresh slot.
    assert await limiter.acquire_many([("u", "m1")]) == [True]
    assert (await limiter.status("u")).used == 1


async def test_status_reports_used_remaining_and_reset_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=5, window_s=WINDOW_S)
    assert await limiter.status("u") == LimitStatus("u", 5, WINDOW_S, 0, 5, 0.0)

    await limiter.acquire_many([("u", "m1")])
    await trio.sleep(3.0)
    await limiter.acquire_many([("u", "m2"), ("u", "m3")])
    await trio.sleep(2.0)
    # The oldest entry (5 s old) leaves in 5 s.
    assert await limiter.status("u") == LimitStatus("u", 5, WINDOW_S, 3, 2, 5.0)

    await trio.sleep(5.5)
    # The first has gone; the next oldest (7.5 s old) leaves in 2.5 s.
    assert await limiter.status("u") == LimitStatus("u", 5, WINDOW_S, 2, 3, 2.5)
    await trio.sleep(3.0)
    assert await limiter.status("u") == LimitStatus("u", 5, WINDOW_S, 0, 5, 0.0)


async def test_status_when_over_a_lowered_limit_never_goes_negative(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=3, window_s=WINDOW_S)
    await limiter.acquire_many([("u", f"m{i}") for i in range(3)])
    limiter.limit = 2
    status = await limiter.status("u")
    assert (status.used, status.remaining) == (3, 0)
    assert await limiter.acquire_many([("u", "new")]) == [False]


async def test_reset_forgets_the_window(autojump_clock: trio.testing.MockClock) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    await limiter.acquire_many([("u", "m1"), ("u", "m2"), ("v", "m1")])
    await limiter.reset("u")
    assert (await limiter.status("u")).used == 0
    assert (await limiter.status("v")).used == 1
    assert await limiter.acquire_many([("u", "m3"), ("u", "m4"), ("u", "m5")]) == [
        True,
        True,
        False,
    ]
    await limiter.reset("nobody")


async def test_many_users_interleaved_are_counted_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=5, window_s=WINDOW_S)
    users = [f"user-{n}" for n in range(50)]
    requests = [(user, f"{user}/{i}") for i in range(8) for user in users]
    decisions = await limiter.acquire_many(requests)

    allowed = [request for request, ok in zip(requests, decisions, strict=True) if ok]
    assert len(allowed) == 50 * 5
    for user in users:
        # The first five of each user, in request order, are the ones allowed.
        assert [m for u, m in allowed if u == user] == [f"{user}/{i}" for i in range(5)]
        assert (await limiter.status(user)).remaining == 0


async def test_idle_users_are_forgotten(autojump_clock: trio.testing.MockClock) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    await limiter.acquire_many([(f"u{n}", "m") for n in range(1000)])
    await trio.sleep(WINDOW_S / 2)
    await limiter.acquire_many([("late", "m")])
    assert len(limiter._windows) == 1001
    await trio.sleep(WINDOW_S / 2 + 0.5)
    await limiter.acquire_many([])
    assert list(limiter._windows) == ["late"]


async def test_cancelled_call_decides_nothing(autojump_clock: trio.testing.MockClock) -> None:
    limiter = MemoryLimiter(limit=1, window_s=WINDOW_S)
    with trio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire_many([("u", "m1")])
    assert scope.cancelled_caught
    assert (await limiter.status("u")).used == 0


async def test_default_clock_is_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    limiter = MemoryLimiter(limit=1, window_s=1.0)
    assert await limiter.acquire_many([("u", "a"), ("u", "b")]) == [True, False]
    await trio.sleep(1.5)
    assert await limiter.acquire_many([("u", "b")]) == [True]
    await limiter.check()
    await limiter.aclose()
    assert (await limiter.status("u")).used == 0


@pytest.mark.parametrize(("limit", "window_s"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_rejects_bad_parameters(limit: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        MemoryLimiter(limit=limit, window_s=window_s)
