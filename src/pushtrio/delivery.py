"""Delivery through one provider: per-attempt timeout, retries with backoff.

:func:`deliver` makes the first attempt and up to ``retry_attempts`` retries of
transient failures, waiting an exponentially growing, jittered delay between
attempts (see :func:`backoff_delay_s`). A permanent failure stops at once. The
result says whether the notification went out, after how many attempts, and why
not if it did not; the caller turns that into an outcome.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .errors import PermanentProviderError, ProviderError

if TYPE_CHECKING:
    from .model import Notification
    from .providers.base import Provider

MAX_BACKOFF_S = 30.0
"""Upper bound of one backoff delay before jitter, however many retries came before."""

_unseeded = random.Random()


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one delivery ended.

    ``attempts`` counts the first attempt too, so ``retries`` is ``attempts - 1``.
    ``error`` is empty on success; ``permanent`` is True only when a provider
    refused the notification for good. ``latency_ms`` spans every attempt and
    backoff delay.
    """

    ok: bool
    attempts: int
    error: str = ""
    permanent: bool = False
    latency_ms: float = 0.0

    @property
    def retries(self) -> int:
        return self.attempts - 1


def backoff_delay_s(retry: int, retry_delay_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``retry`` (1 for the first retry).

    Exponential with "equal jitter": the base ``retry_delay_s * 2**(retry - 1)``,
    capped at :data:`MAX_BACKOFF_S`, is scaled by a uniform factor in [0.5, 1.0].
    Half the base is kept so that a retry never comes right back at a provider
    that just failed; the random half spreads the retries of many workers that
    failed together (for instance on a 503 burst) so they do not return in lockstep.
    """
    if retry < 1:
        raise ValueError(f"retry counts from 1, not {retry}")
    # Clamp the exponent so that hundreds of retries cannot overflow the float.
    base_s = min(retry_delay_s * 2.0 ** min(retry - 1, 64), MAX_BACKOFF_S)
    return base_s * (rng if rng is not None else _unseeded).uniform(0.5, 1.0)


async def _attempt(
    provider: Provider, notification: Notification, attempt: int, timeout_s: float
) -> tuple[str, bool] | None:
    """One provider call: None on success, else (error, permanent)."""
    with trio.move_on_after(timeout_s):
        try:
            await provider.send(notification, attempt)
        except ProviderError as exc:
            # A ProviderError that is neither subclass is unclassified; retrying it
            # is the safer guess because the number of retries is bounded anyway.
            return exc.reason, isinstance(exc, PermanentProviderError)
        return None
    # Only our own scope's expiry lands here: an outer cancellation propagates.
    return f"timeout after {timeout_s:g}s", False


async def deliver(
    provider: Provider,
    notification: Notification,
    *,
    retry_attempts: int,
    retry_delay_s: float,
    timeout_s: float,
    rng: random.Random | None = None,
    start_attempt: int = 1,
) -> DeliveryResult:
    """Send ``notification`` through ``provider``, retrying transient failures.

    Makes one attempt plus up to ``retry_attempts`` retries. Each attempt is
    limited to ``timeout_s``; running out of time counts as a transient failure
    (error ``"timeout after <timeout_s>s"``). Transient failures are retried after
    :func:`backoff_delay_s` (drawn from ``rng``, a process-wide RNG when None);
    a :class:`~pushtrio.errors.PermanentProviderError` ends the delivery at once.

    Returns a :class:`DeliveryResult`; provider failures never raise. Any other
    exception from the provider propagates unchanged (the worker's per-message
    boundary deals with it). On cancellation, trio.Cancelled propagates from the
    attempt or the backoff wait in progress and no result is returned.
    """
    if retry_attempts < 0:
        raise ValueError(f"retry_attempts must be >= 0, not {retry_attempts}")
    started = trio.current_time()
    attempt = start_attempt
    if attempt > 1:
        await trio.sleep(backoff_delay_s(attempt - 1, retry_delay_s, rng))
    while True:
        failure = await _attempt(provider, notification, attempt, timeout_s)
        if failure is None:
            return DeliveryResult(ok=True, attempts=attempt, latency_ms=_since_ms(started))
        error, permanent = failure
        if permanent or attempt > retry_attempts:
            return DeliveryResult(
                ok=False,
                attempts=attempt,
                error=error,
                permanent=permanent,
                latency_ms=_since_ms(started),
            )
        await trio.sleep(backoff_delay_s(attempt, retry_delay_s, rng))
        attempt += 1


async def first_attempts(
    provider: Provider,
    notifications: Sequence[Notification],
    *,
    timeout_s: float,
    attempt: int = 1,
) -> list[tuple[str, bool] | None]:
    """Attempt number ``attempt`` of many notifications in one provider call.

    Per notification: None on success, else ``(error, permanent)``. Running out of
    ``timeout_s`` fails them all transiently. Cancellation propagates.
    """
    with trio.move_on_after(timeout_s):
        results = await provider.send_many(notifications, attempt)
        return [
            None if exc is None else (exc.reason, isinstance(exc, PermanentProviderError))
            for exc in results
        ]
    return [(f"timeout after {timeout_s:g}s", False)] * len(notifications)


def _since_ms(started: float) -> float:
    return (trio.current_time() - started) * 1000.0
