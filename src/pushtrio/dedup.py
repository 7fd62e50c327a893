"""Delivered-id memory: a message id delivered once is not delivered again.

The pipeline asks :meth:`DedupStore.seen_many` before delivering and calls
:meth:`DedupStore.remember_many` after a delivery succeeds; an id seen within the
TTL gets the outcome ``duplicate``. :class:`RedisDedup` keeps the ids in Redis
(keys ``dedup:<id>``), global across pushtrio processes; :class:`MemoryDedup` is
its in-process twin for the embedded mode and unit tests.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import redis
import trio

from .redis_client import execute_many, raise_first_error, run_redis

KEY_PREFIX = "dedup:"


class DedupStore(Protocol):
    """Remembers delivered message ids for a while."""

    async def seen_many(self, ids: Sequence[str]) -> list[bool]:
        """For each id, in order: was it remembered and is it still within its TTL?

        Raises BackendError when the store cannot be reached.
        """
        ...

    async def remember_many(self, ids: Sequence[str]) -> None:
        """Remember ids as delivered for the TTL (renewing ids already there).

        Raises BackendError when the store cannot be reached.
        """
        ...

    async def check(self) -> None:
        """Raise BackendError unless the store answers (health probe)."""
        ...

    async def aclose(self) -> None: ...


def dedup_key(message_id: str) -> str:
    """The Redis key remembering ``message_id``."""
    return KEY_PREFIX + message_id


class RedisDedup:
    """Delivered ids in Redis, one key per id with a TTL; one round trip per call.

    ``client`` is shared and stays the caller's: :meth:`aclose` does not close it.
    Every method raises BackendError when Redis fails or does not answer within
    the client's socket timeouts; cancellation takes effect once the round trip
    in flight ends.
    """

    def __init__(self, client: redis.Redis, ttl_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be above zero, got {ttl_s}")
        self.ttl_s = ttl_s
        # Milliseconds (SET ... PX) so that sub-second TTLs stay exact.
        self._ttl_ms = max(1, math.ceil(ttl_s * 1000))
        self._client = client

    async def seen_many(self, ids: Sequence[str]) -> list[bool]:
        """EXISTS for every id in one pipeline; True where the id is remembered."""
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        replies = await run_redis(partial(self._exists, ids))
        return [bool(reply) for reply in replies]

    async def remember_many(self, ids: Sequence[str]) -> None:
        """SET with the TTL for every id in one pipeline (idempotent, safe to repeat)."""
        if not ids:
            await trio.lowlevel.checkpoint()
            return
        await run_redis(partial(self._set, ids))

    async def check(self) -> None:
        """PING Redis; raise BackendError unless it answers in time."""
        await run_redis(self._client.ping, abandon_on_cancel=True)

    async def aclose(self) -> None:
        """Nothing to release: the shared client belongs to whoever made it."""
        await trio.lowlevel.checkpoint()

    def _exists(self, ids: Sequence[str]) -> list[int]:
        # A pipeline must not be shared between threads: one per call. EXISTS per
        # key rather than one multi-key EXISTS keeps each command on one slot.
        replies = execute_many(self._client, [("EXISTS", dedup_key(i)) for i in ids])
        raise_first_error(replies)
        return replies

    def _set(self, ids: Sequence[str]) -> None:
        ttl_ms = self._ttl_ms
        replies = execute_many(
            self._client, [("SET", dedup_key(i), b"1", "PX", ttl_ms) for i in ids]
        )
        raise_first_error(replies)


class MemoryDedup:
    """Delivered ids in process memory, each with an expiry; no I/O.

    Expired ids are pruned on every call, oldest first, so memory holds only the
    ids remembered within the last TTL. Each method is a trio checkpoint: when
    cancelled there it raises ``trio.Cancelled`` having done nothing. It never
    raises BackendError.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = trio.current_time) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be above zero, got {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        # id -> expiry. The TTL is fixed and the clock monotonic, and a renewed id
        # moves to the end, so the order is by expiry: pruning stops at the first
        # id still alive.
        self._expiry: OrderedDict[str, float] = OrderedDict()

    async def seen_many(self, ids: Sequence[str]) -> list[bool]:
        """True where the id was remembered less than the TTL ago."""
        await trio.lowlevel.checkpoint()
        self._prune(self._clock())
        return [message_id in self._expiry for message_id in ids]

    async def remember_many(self, ids: Sequence[str]) -> None:
        """Remember ids for the TTL from now (renewing ids already there)."""
        await trio.lowlevel.checkpoint()
        now = self._clock()
        self._prune(now)
        expiry = now + self.ttl_s
        for message_id in ids:
            self._expiry[message_id] = expiry
            self._expiry.move_to_end(message_id)

    async def check(self) -> None:
        """Always healthy: there is nothing to reach."""
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Forget every id."""
        await trio.lowlevel.checkpoint()
        self._expiry.clear()

    def __len__(self) -> int:
        """Ids held now, expired ones not yet pruned included."""
        return len(self._expiry)

    def _prune(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            message_id, expires_at = next(iter(expiry.items()))
            if expires_at > now:
                break
            del expiry[message_id]


__all__ = ["KEY_PREFIX", "DedupStore", "MemoryDedup", "RedisDedup", "dedup_key"]
