"""MemoryLimiter: the exact sliding-window rules, checked on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

from pushtrio.stores.limiter import LimitStatus
from pushtrio.stores.limiter.memory import MemoryLimiter

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


# decide_many: the same decisions, and for a refusal the wait until a slot frees.

MICROSECOND = 1e-6


async def test_decide_many_is_zero_when_allowed_and_the_wait_when_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    assert await limiter.decide_many([("u", "m1")]) == [0.0]
    await trio.sleep(3.0)
    assert await limiter.decide_many([("u", "m2")]) == [0.0]
    await trio.sleep(2.0)
    # The oldest entry is 5 s old: it is strictly older than the window in 5 s + 1 µs.
    [wait] = await limiter.decide_many([("u", "m3")])
    assert wait == pytest.approx(5.0 + MICROSECOND, abs=1e-9)
    assert 0.0 < wait <= WINDOW_S + MICROSECOND
    assert (await limiter.status("u")).used == 2


async def test_decide_many_waits_a_window_for_an_entry_taken_at_the_same_instant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=1, window_s=WINDOW_S)
    waits = await limiter.decide_many([("u", "a"), ("u", "b"), ("v", "a"), ("u", "a")])
    assert waits == [0.0, pytest.approx(WINDOW_S + MICROSECOND, abs=1e-9), 0.0, 0.0]


async def test_waiting_the_returned_wait_frees_the_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    await limiter.decide_many([("u", "m1")])
    await trio.sleep(4.0)
    await limiter.decide_many([("u", "m2")])
    [wait] = await limiter.decide_many([("u", "m3")])
    start = trio.current_time()

    # A microsecond short of it, the oldest entry's age is still within the window.
    await trio.sleep_until(start + wait - 2 * MICROSECOND)
    [short] = await limiter.decide_many([("u", "m3")])
    assert 0.0 < short <= 2 * MICROSECOND + 1e-9

    # On it, m1 has left; m2 (taken 4 s after m1) leaves 4 s later.
    await trio.sleep_until(start + wait)
    assert await limiter.decide_many([("u", "m3"), ("u", "m4")]) == [
        0.0,
        pytest.approx(4.0, abs=1e-9),
    ]


async def test_decide_many_for_a_message_id_already_in_the_window_is_zero(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    assert await limiter.decide_many([("u", "m1"), ("u", "m2")]) == [0.0, 0.0]
    await trio.sleep(1.0)
    waits = await limiter.decide_many([("u", "m3"), ("u", "m1"), ("u", "m2")])
    assert waits == [pytest.approx(WINDOW_S - 1.0 + MICROSECOND, abs=1e-9), 0.0, 0.0]
    assert (await limiter.status("u")).used == 2


async def test_decide_many_and_acquire_many_share_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=2, window_s=WINDOW_S)
    assert await limiter.acquire_many([("u", "m1")]) == [True]
    await trio.sleep(1.0)
    assert await limiter.decide_many([("u", "m2")]) == [0.0]
    assert await limiter.acquire_many([("u", "m3"), ("u", "m2")]) == [False, True]
    [wait] = await limiter.decide_many([("u", "m3")])
    await trio.sleep(wait)
    assert await limiter.acquire_many([("u", "m3"), ("u", "m4")]) == [True, False]


async def test_decide_many_over_a_lowered_limit_waits_until_it_is_under_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = MemoryLimiter(limit=3, window_s=WINDOW_S)
    for i in range(3):
        await limiter.decide_many([("u", f"m{i}")])
        await trio.sleep(1.0)
    limiter.limit = 1
    # Entries 3, 2 and 1 s old: a slot frees only once all three have left.
    [wait] = await limiter.decide_many([("u", "new")])
    assert wait == pytest.approx(WINDOW_S - 1.0 + MICROSECOND, abs=1e-9)
    await trio.sleep(wait)
    assert await limiter.decide_many([("u", "new")]) == [0.0]


async def test_decide_many_uses_the_injected_clock() -> None:
    now = 1_000.0
    limiter = MemoryLimiter(limit=1, window_s=WINDOW_S, clock=lambda: now)
    assert await limiter.decide_many([("u", "m1")]) == [0.0]
    now += 6.0
    [wait] = await limiter.decide_many([("u", "m2")])
    assert wait == pytest.approx(4.0 + MICROSECOND, abs=1e-9)
    now += wait
    assert await limiter.decide_many([("u", "m2")]) == [0.0]


async def test_decide_many_empty_and_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    limiter = MemoryLimiter(limit=1, window_s=WINDOW_S)
    assert await limiter.decide_many([]) == []
    with trio.CancelScope() as scope:
        scope.cancel()
        await limiter.decide_many([("u", "m1")])
    assert scope.cancelled_caught
    assert (await limiter.status("u")).used == 0
