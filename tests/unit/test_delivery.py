"""deliver(): timeouts, retries with jittered backoff, permanent errors, cancellation.

Fake providers follow httpx's MockTransport: a handler function decides what each
attempt does. All time is virtual (autojump clock), so the backoff is checked
exactly against its bounds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
import trio

from pushtrio.delivery import MAX_BACKOFF_S, DeliveryResult, backoff_delay_s, deliver
from pushtrio.errors import PermanentProviderError, ProviderError, TransientProviderError
from pushtrio.model import Notification
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
    ) -> list[ProviderError | None]:
        results: list[ProviderError | None] = []
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


async def run(provider: FakeProvider | MockProvider, **options: float) -> DeliveryResult:
    settings: dict[str, float] = {"retry_attempts": 3, "retry_delay_s": 1.0, "timeout_s": 10.0}
    settings.update(options)
    return await deliver(
        provider,
        NOTE,
        retry_attempts=int(settings["retry_attempts"]),
        retry_delay_s=settings["retry_delay_s"],
        timeout_s=settings["timeout_s"],
    )


async def test_success_at_first_attempt(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(succeed, latency_s=lambda _: 0.05)
    result = await run(provider)
    assert (result.ok, result.attempts, result.error, result.permanent) == (True, 1, "", False)
    assert result.latency_ms == pytest.approx(50.0)
    assert result.retries == 0
    assert provider.attempts == [1]


async def test_transient_then_success_waits_one_backoff(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(fail_until(2))
    start = trio.current_time()
    result = await run(provider, retry_delay_s=2.0)
    elapsed = trio.current_time() - start
    assert result.ok
    assert result.attempts == 2
    assert result.retries == 1
    assert result.error == ""
    assert provider.attempts == [1, 2]
    assert 1.0 <= elapsed <= 2.0
    assert result.latency_ms == pytest.approx(elapsed * 1000)


async def test_retries_exhausted(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(fail_until(99, "429 throttled"))
    start = trio.current_time()
    result = await run(provider, retry_attempts=3, retry_delay_s=1.0)
    elapsed = trio.current_time() - start
    assert not result.ok
    assert result.attempts == 4
    assert result.error == "429 throttled"
    assert not result.permanent
    assert provider.attempts == [1, 2, 3, 4]
    # Three backoffs of base 1, 2 and 4 seconds, each scaled by [0.5, 1.0].
    assert 3.5 <= elapsed <= 7.0


async def test_no_retries_configured(autojump_clock: trio.abc.Clock) -> None:
    result = await run(FakeProvider(fail_until(99)), retry_attempts=0)
    assert (result.ok, result.attempts) == (False, 1)


async def test_permanent_error_is_not_retried(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(reject)
    start = trio.current_time()
    result = await run(provider)
    assert result == DeliveryResult(
        ok=False, attempts=1, error="unregistered token", permanent=True, latency_ms=0.0
    )
    assert provider.attempts == [1]
    assert trio.current_time() == start


async def test_permanent_error_after_a_transient_one(autojump_clock: trio.abc.Clock) -> None:
    def handler(notification: Notification, attempt: int) -> None:
        if attempt == 1:
            raise TransientProviderError("fake", "gateway timeout")
        raise PermanentProviderError("fake", "invalid payload")

    result = await run(FakeProvider(handler))
    assert (result.ok, result.attempts, result.permanent) == (False, 2, True)
    assert result.error == "invalid payload"


async def test_unclassified_provider_error_is_retried(autojump_clock: trio.abc.Clock) -> None:
    def handler(notification: Notification, attempt: int) -> None:
        raise ProviderError("fake", "odd")

    result = await run(FakeProvider(handler), retry_attempts=2)
    assert (result.ok, result.attempts, result.permanent) == (False, 3, False)


async def test_slow_provider_times_out_as_transient(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(succeed, latency_s=lambda _: 60.0)
    start = trio.current_time()
    result = await run(provider, retry_attempts=1, timeout_s=1.5, retry_delay_s=0.0)
    assert not result.ok
    assert result.attempts == 2
    assert not result.permanent
    assert result.error == "timeout after 1.5s"
    assert trio.current_time() - start == pytest.approx(3.0)


async def test_timeout_then_success(autojump_clock: trio.abc.Clock) -> None:
    provider = FakeProvider(succeed, latency_s=lambda attempt: 60.0 if attempt == 1 else 0.1)
    result = await run(provider, timeout_s=1.0)
    assert (result.ok, result.attempts) == (True, 2)


async def test_other_exceptions_propagate(autojump_clock: trio.abc.Clock) -> None:
    def handler(notification: Notification, attempt: int) -> None:
        raise KeyError("bug")

    provider = FakeProvider(handler)
    with pytest.raises(KeyError, match="bug"):
        await run(provider)
    assert provider.attempts == [1]


@pytest.mark.parametrize("latency_s", [60.0, 0.0])
async def test_cancellation_propagates(autojump_clock: trio.abc.Clock, latency_s: float) -> None:
    # With latency 60 the cancel lands during an attempt; with 0, during a backoff.
    handler = succeed if latency_s else fail_until(99)
    provider = FakeProvider(handler, latency_s=lambda _: latency_s)
    result: DeliveryResult | None = None
    with trio.move_on_after(5.0) as scope:
        result = await run(provider, retry_delay_s=30.0, timeout_s=100.0)
    assert scope.cancelled_caught
    assert result is None
    assert provider.attempts == [1]


async def test_rejects_negative_retry_attempts() -> None:
    with pytest.raises(ValueError, match="retry_attempts"):
        await run(FakeProvider(succeed), retry_attempts=-1)


async def test_same_rng_seed_same_timing(autojump_clock: trio.abc.Clock) -> None:
    async def elapsed(seed: int) -> float:
        start = trio.current_time()
        await deliver(
            FakeProvider(fail_until(99)),
            NOTE,
            retry_attempts=5,
            retry_delay_s=1.0,
            timeout_s=1.0,
            rng=random.Random(seed),
        )
        return trio.current_time() - start

    # Virtual time is exact up to float rounding of the clock's base.
    assert await elapsed(1) == pytest.approx(await elapsed(1))
    assert await elapsed(1) != pytest.approx(await elapsed(2))


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


async def test_with_a_seeded_mock_provider(autojump_clock: trio.abc.Clock) -> None:
    async def outcome(seed: int) -> list[DeliveryResult]:
        provider = MockProvider("fcm", 0.5, 0.005, seed=seed)
        out = []
        for i in range(50):
            note = Notification(id=f"m{i}", user_id="u", title="t", provider="fcm")
            result = await deliver(
                provider,
                note,
                retry_attempts=3,
                retry_delay_s=0.1,
                timeout_s=1.0,
                rng=random.Random(i),
            )
            out.append(result)
        return out

    def summary(results: list[DeliveryResult]) -> list[tuple[bool, int, str, float]]:
        return [(r.ok, r.attempts, r.error, round(r.latency_ms, 6)) for r in results]

    first = await outcome(8)
    assert summary(first) == summary(await outcome(8))
    assert any(r.ok and r.attempts > 1 for r in first)
    assert any(not r.ok and r.permanent for r in first)
    assert all(r.attempts <= 4 for r in first)
