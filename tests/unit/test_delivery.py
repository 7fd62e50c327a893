"""first_attempts(): one provider call per batch, per-notification results, the
timeout, cancellation; and the jittered back-off of the retry tiers.

Fake providers follow httpx's MockTransport: a handler function decides what each
attempt does. All time is virtual (autojump clock).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
import trio

from pushtrio.contract.delays import MAX_BACKOFF_S, backoff_delay_s
from pushtrio.contract.errors import PermanentProviderError, ProviderError, TransientProviderError
from pushtrio.contract.notification import Notification
from pushtrio.contract.outcome import DeviceCounts
from pushtrio.pipeline.attempt import DELIVERED, Answer, first_attempts
from pushtrio.providers import MockProvider

NOTE = Notification(id="n1", user_id="u1", title="hello", provider="fcm")

Handler = Callable[[Notification, int], None]


class FakeProvider:
    """Waits ``latency_s(attempt)`` then lets ``handler`` succeed or raise."""

    def __init__(self, handler: Handler, latency_s: Callable[[int], float] = lambda _: 0.0):
        self.name = "fake"
        self.handler = handler
        self.latency_s = latency_s
        self.attempts: list[int] = []

    async def send(self, notification: Notification, attempt: int) -> None:
        self.attempts.append(attempt)
        await trio.sleep(self.latency_s(attempt))
        self.handler(notification, attempt)

    async def send_many(
        self, notifications: Sequence[Notification], attempt: int
    ) -> list[ProviderError | DeviceCounts | None]:
        results: list[ProviderError | DeviceCounts | None] = []
        for notification in notifications:
            try:
                await self.send(notification, attempt)
            except ProviderError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results


def succeed(notification: Notification, attempt: int) -> None:
    return None


def fail_until(good_attempt: int, reason: str = "503 unavailable") -> Handler:
    def handler(notification: Notification, attempt: int) -> None:
        if attempt < good_attempt:
            raise TransientProviderError("fake", reason)

    return handler


def reject(notification: Notification, attempt: int) -> None:
    raise PermanentProviderError("fake", "unregistered token")


def note(i: int) -> Notification:
    return Notification(id=f"n{i}", user_id="u1", title="hello", provider="fcm")


async def test_each_notification_gets_its_own_result(autojump_clock: trio.abc.Clock) -> None:
    def handler(notification: Notification, attempt: int) -> None:
        if notification.id == "n1":
            raise TransientProviderError("fake", "503 unavailable")
        if notification.id == "n2":
            raise PermanentProviderError("fake", "unregistered token")
        if notification.id == "n3":
            raise ProviderError("fake", "odd")  # unclassified: worth a retry

    provider = FakeProvider(handler)
    results = await first_attempts(provider, [note(i) for i in range(4)], timeout_s=10.0)
    assert results == [
        DELIVERED,
        Answer("503 unavailable"),
        Answer("unregistered token", permanent=True),
        Answer("odd"),
    ]
    assert provider.attempts == [1, 1, 1, 1]


async def test_the_attempt_number_reaches_the_provider(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(fail_until(3))
    assert await first_attempts(provider, [NOTE], timeout_s=1.0, attempt=2) == [
        Answer("503 unavailable")
    ]
    assert await first_attempts(provider, [NOTE], timeout_s=1.0, attempt=3) == [DELIVERED]
    assert provider.attempts == [2, 3]


async def test_a_slow_call_times_out_as_a_transient_failure_of_all(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = FakeProvider(succeed, latency_s=lambda _: 60.0)
    start = trio.current_time()
    results = await first_attempts(provider, [note(0), note(1)], timeout_s=1.5)
    assert results == [Answer("timeout after 1.5s")] * 2
    assert trio.current_time() - start == pytest.approx(1.5)


async def test_other_exceptions_propagate(autojump_clock: trio.abc.Clock) -> None:
    def handler(notification: Notification, attempt: int) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        await first_attempts(FakeProvider(handler), [NOTE], timeout_s=1.0)


async def test_cancellation_propagates(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(succeed, latency_s=lambda _: 60.0)
    results: object = None
    with trio.move_on_after(5.0) as scope:
        results = await first_attempts(provider, [NOTE], timeout_s=100.0)
    assert scope.cancelled_caught
    assert results is None


def test_backoff_bounds_and_cap() -> None:
    rng = random.Random(0)
    for retry in range(1, 8):
        base = min(0.5 * 2 ** (retry - 1), MAX_BACKOFF_S)
        for _ in range(200):
            assert 0.5 * base <= backoff_delay_s(retry, 0.5, rng) <= base
    assert backoff_delay_s(1000, 1.0, rng) <= MAX_BACKOFF_S
    assert backoff_delay_s(3, 0.0, rng) == 0.0
    with pytest.raises(ValueError, match="retry"):
        backoff_delay_s(0, 1.0)


def test_the_same_seed_gives_the_same_back_off() -> None:
    first = [backoff_delay_s(r, 1.0, random.Random(7)) for r in range(1, 6)]
    again = [backoff_delay_s(r, 1.0, random.Random(7)) for r in range(1, 6)]
    other = [backoff_delay_s(r, 1.0, random.Random(8)) for r in range(1, 6)]
    assert first == again
    assert first != other


async def test_a_seeded_mock_provider_decides_the_same_way(autojump_clock: trio.abc.Clock) -> None:
    async def results(seed: int) -> list[Answer]:
        provider = MockProvider("fcm", 0.5, 0.005, seed=seed)
        return await first_attempts(provider, [note(i) for i in range(50)], timeout_s=1.0)

    first = await results(3)
    assert first == await results(3)
    assert first != await results(4)
    assert any(r.delivered for r in first)
    assert any(not r.delivered for r in first)
