"""Mock push providers: the stand-ins for FCM, APNs and Firebase.

A :class:`MockProvider` waits a fixed latency, then delivers with probability
``success_rate``. Failures are a realistic mix: mostly transient (gateway
timeouts, 503, 429 throttling) and a fifth permanent (unregistered token,
invalid payload), so both the retry path and the dead-letter path get traffic.

With a seed, the result of one call is a pure function of (seed, notification
id, attempt): tests and concurrent workers see the same results whatever the
order of calls. Without a seed the results come from a process-wide RNG.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import BinaryIO

import trio

from ..contract.errors import PermanentProviderError, ProviderError, TransientProviderError
from ..contract.notification import Notification
from ..contract.outcome import DeviceCounts
from .base import Counters, ProviderStats

FAILURE_MIX: tuple[tuple[str, bool, float], ...] = (
    # (reason, permanent, share of failures); shares add up to 1.
    ("gateway timeout", False, 0.30),
    ("503 unavailable", False, 0.30),
    ("429 throttled", False, 0.20),
    ("unregistered token", True, 0.12),
    ("invalid payload", True, 0.08),
)

_unseeded = random.Random()


def _draws(seed: int, notification_id: str, attempt: int) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) that depend only on the arguments."""
    digest = hashlib.blake2b(f"{seed}:{notification_id}:{attempt}".encode(), digest_size=16)
    raw = digest.digest()
    scale = float(2**64)
    return int.from_bytes(raw[:8], "big") / scale, int.from_bytes(raw[8:], "big") / scale


FAILURE_MODES = ("mixed", "transient", "permanent")
"""``mixed`` draws from all of FAILURE_MIX; the others only from its transient or
permanent part, in the same proportions."""


def _failure(draw: float, mode: str = "mixed") -> tuple[str, bool]:
    kinds = [
        (reason, permanent, share)
        for reason, permanent, share in FAILURE_MIX
        if mode == "mixed" or permanent == (mode == "permanent")
    ]
    scaled = draw * sum(share for _, _, share in kinds)
    cumulative = 0.0
    for reason, permanent, share in kinds:
        cumulative += share
        if scaled < cumulative:
            return reason, permanent
    # Float rounding can leave the shares summing just under the total.
    reason, permanent, _ = kinds[-1]
    return reason, permanent


class MockProvider:
    """A provider that succeeds with probability ``success_rate`` after ``latency_s``.

    :meth:`configure` changes it on a live instance (an outage, a recovery: tests
    and ``PATCH /providers/<name>`` use it). ``seed`` makes every result reproducible.
    """

    def __init__(
        self,
        name: str,
        success_rate: float,
        latency_s: float,
        seed: int | None = None,
        journal: BinaryIO | None = None,
    ) -> None:
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate must be from 0 to 1, not {success_rate}")
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, not {latency_s}")
        self.name = name
        self.success_rate = success_rate
        self.failure = "mixed"
        """Which failures it simulates: one of FAILURE_MODES."""
        self.latency_s = latency_s
        self.seed = seed
        # The "device inbox": one line per accepted notification, written at once
        # (unbuffered), so a test can count deliveries even across a kill -9.
        self._journal = journal
        self._counters = Counters()

    def __repr__(self) -> str:
        return (
            f"MockProvider({self.name!r}, success_rate={self.success_rate}, "
            f"latency_s={self.latency_s}, seed={self.seed})"
        )

    async def send(self, notification: Notification, attempt: int) -> None:
        """Pretend to deliver ``notification``; return on success.

        Raises TransientProviderError or PermanentProviderError on a simulated
        failure. On cancellation (during the simulated latency) trio.Cancelled
        propagates and the call is not counted in :meth:`stats`.
        """
        await self._wait()
        failure = self._decide(notification, attempt)
        if failure is not None:
            raise failure

    async def send_many(
        self, notifications: Sequence[Notification], attempt: int
    ) -> list[ProviderError | DeviceCounts | None]:
        """Pretend to deliver many in one call (like FCM's batch send or APNs over HTTP/2).

        One simulated latency for the whole call; per notification, None on
        success or the error it met. Cancellation behaves as in :meth:`send`.
        """
        await self._wait()
        return [self._decide(notification, attempt) for notification in notifications]

    async def _wait(self) -> None:
        if self.latency_s > 0:
            await trio.sleep(self.latency_s)
        else:
            # Keep every call a checkpoint even at zero latency, like any real I/O call.
            await trio.lowlevel.checkpoint()

    def _decide(self, notification: Notification, attempt: int) -> ProviderError | None:
        if self.seed is None:
            outcome_draw, failure_draw = _unseeded.random(), _unseeded.random()
        else:
            outcome_draw, failure_draw = _draws(self.seed, notification.id, attempt)
        if outcome_draw < self.success_rate:
            if self._journal is not None:
                self._journal.write(f"{self.name} {notification.id}\n".encode())
            self._counters.ok()
            return None
        reason, permanent = _failure(failure_draw, self.failure)
        self._counters.failed(permanent=permanent)
        if permanent:
            return PermanentProviderError(self.name, reason)
        return TransientProviderError(self.name, reason)

    def configure(
        self,
        *,
        success_rate: float | None = None,
        latency_s: float | None = None,
        failure: str | None = None,
    ) -> None:
        """Change the simulation at run time; ValueError (nothing changed) on a bad value."""
        if success_rate is not None and not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate must be from 0 to 1, not {success_rate}")
        if latency_s is not None and not 0.0 <= latency_s <= 60.0:
            raise ValueError(f"latency must be from 0 to 60 s, not {latency_s}")
        if failure is not None and failure not in FAILURE_MODES:
            raise ValueError(f"failure must be one of {', '.join(FAILURE_MODES)}")
        if success_rate is not None:
            self.success_rate = success_rate
        if latency_s is not None:
            self.latency_s = latency_s
        if failure is not None:
            self.failure = failure

    def describe(self) -> dict[str, float | str]:
        """The simulation's settings, as ``GET /providers`` shows them."""
        return {
            "success_rate": self.success_rate,
            "latency_ms": self.latency_s * 1000,
            "failure": self.failure,
        }

    @property
    def healthy(self) -> bool:
        """False once the last :data:`UNHEALTHY_AFTER_FAILURES` calls all failed."""
        return self._counters.healthy

    def stats(self) -> ProviderStats:
        """A snapshot of the counters; calls cut short by a timeout are not in it."""
        return self._counters.snapshot(self.name)


def provider_seed(seed: int | None, name: str) -> int | None:
    """The seed of provider ``name`` derived from the service-wide ``seed``.

    Each provider gets its own stream so that fcm and apns do not fail on the
    same notification ids in lockstep.
    """
    if seed is None:
        return None
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
