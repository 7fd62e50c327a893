"""Delivered-id memory: a message id delivered once is not delivered again.

The pipeline asks :meth:`DedupStore.seen_many` before delivering and calls
:meth:`DedupStore.remember_many` after a delivery succeeds; an id seen within the
TTL gets the outcome ``duplicate``. :class:`RedisDedup` keeps the ids in Redis,
global across pushtrio processes, as 64-bit digests in time-bucketed sets (see
:mod:`pushtrio.stores.dedup_layout`); :class:`MemoryDedup` is its in-process twin for the
embedded mode and unit tests. Both remember an id for at least the TTL; Redis may
remember it one bucket (half the TTL) longer, the embedded store exactly the TTL.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol

import redis
import trio

from .dedup_layout import (
    BUCKETS_PER_TTL,
    CLOCK_MARGIN_S,
    KEY_PREFIX,
    BucketLayout,
    digest,
    level_bits,
    level_for,
)
from .redis_client import execute_many, raise_first_error, run_redis

Command = tuple[bytes | int, ...]

LAYOUT_ATTEMPTS = 3
"""Round trips a call may take when another instance fixed a bucket's shards first."""

LAYOUT_UNSETTLED = "dedup: a bucket's shard count kept changing (were dedup keys deleted?)"


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


class RedisDedup:
    """Delivered ids in Redis, as 64-bit digests in time-bucketed sets; one round trip per call.

    See :mod:`pushtrio.stores.dedup_layout` for the layout: an id is remembered for at
    least the TTL and at most one bucket (half the TTL, plus :data:`CLOCK_MARGIN_S`)
    longer, in about 10 bytes of Redis memory. Every command names one key (Redis
    Cluster works). A look-up also sends one write that changes nothing, so a
    Redis that refuses writes (out of memory) fails look-ups as well as records.

    Time is Redis's: its ``TIME`` is asked once before the first call and then
    rides along every round trip, so every instance cuts buckets on one clock.
    ``clock`` (seconds since the epoch) replaces it, for tests and benchmarks;
    ``clock_margin_s`` is how far instances' views of that clock may differ.
    ``buckets_per_ttl`` trades memory for look-up commands (see
    :data:`~pushtrio.stores.dedup_layout.BUCKETS_PER_TTL`). Raises ValueError for a TTL
    not above zero or fewer than one bucket per TTL.

    ``client`` is shared and stays the caller's: :meth:`aclose` does not close it.
    Every method raises BackendError when Redis fails or does not answer within
    the client's socket timeouts, including Redis's ``OutOfMemoryError`` when it is
    at ``maxmemory`` with ``noeviction``; a failed record may have kept some ids and
    not others, and repeating it is safe. Cancellation takes effect once the round
    trip in flight ends.
    """

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: float,
        *,
        clock: Callable[[], float] | None = None,
        clock_margin_s: float = CLOCK_MARGIN_S,
        buckets_per_ttl: int = BUCKETS_PER_TTL,
    ) -> None:
        self.layout = BucketLayout.for_ttl(ttl_s, clock_margin_s, buckets_per_ttl)
        self.ttl_s = ttl_s
        self._client = client
        self._clock = clock
        # Redis's clock minus ours; None until the first TIME.
        self._offset_s: float | None = None
        # What the bucket hashes said: shard bits (fixed once stored) and ids
        # recorded. Worker threads share them, hence the lock.
        self._bits: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    async def seen_many(self, ids: Sequence[str]) -> list[bool]:
        """True where the id was remembered within the TTL; one round trip.

        Per live bucket an HMGET of its hash, per id and live bucket a SISMEMBER,
        and one write that changes nothing. Raises BackendError when Redis fails or is
        out of memory.
        """
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        return await run_redis(partial(self._seen, list(ids)))

    async def remember_many(self, ids: Sequence[str]) -> None:
        """Add ids to the current bucket's sets, in one pipeline (safe to repeat).

        An id remembered again is renewed: it is in the newest bucket too.
        Raises BackendError when Redis fails or refuses (``OutOfMemoryError``);
        then some ids may be recorded and others not.
        """
        if not ids:
            await trio.lowlevel.checkpoint()
            return
        await run_redis(partial(self._remember, list(ids)))

    async def check(self) -> None:
        """PING Redis; raise BackendError unless it answers in time."""
        await run_redis(self._client.ping, abandon_on_cancel=True)

    async def aclose(self) -> None:
        """Nothing to release: the shared client belongs to whoever made it."""
        await trio.lowlevel.checkpoint()

    # -- in a worker thread ------------------------------------------------------------

    def _seen(self, ids: list[str]) -> list[bool]:
        digests = [digest(i) for i in ids]
        members = [b"%d" % member for member, _ in digests]
        n = len(ids)
        for _ in range(LAYOUT_ATTEMPTS):
            now_ms = self._now_ms()
            buckets = self.layout.live_buckets(now_ms)
            bits = self._bits_for(buckets, now_ms)
            levels = self._levels(buckets, bits)
            # A write that changes nothing (HINCRBY by 0) but is refused, like any
            # record, by a Redis out of memory: the look-up fails then, so nothing
            # gets delivered that could not be recorded.
            current = self.layout.bucket_of(now_ms)
            meta = self.layout.meta_key(current)
            commands: list[Command] = [
                (b"HINCRBY", meta, b"ids", 0),
                (b"PEXPIREAT", meta, self.layout.expire_at_ms(current)),
            ]
            # One SISMEMBER per id, bucket and level: cheaper to build and parse than
            # grouping the ids that share a set, which is rare at any real volume.
            for bucket in buckets:
                for level in range(levels[bucket] + 1):
                    prefix = self.layout.set_prefix(bucket, level)
                    shift = 64 - level_bits(bits[bucket], level)
                    commands += [
                        (b"SISMEMBER", b"%s%d" % (prefix, source >> shift), member)
                        for member, (_, source) in zip(members, digests, strict=True)
                    ]
            # The counts after the look-ups: a level an id was written to before its
            # look-up shows in them (the writer counted before it wrote).
            commands += [(b"HMGET", self.layout.meta_key(b), b"bits", b"ids") for b in buckets]
            replies = self._execute(commands)[2:]
            hits, metas = replies[: -len(buckets)], replies[-len(buckets) :]
            rows = [hits[k : k + n] for k in range(0, len(hits), n)]
            seen = [any(row) for row in zip(*rows, strict=True)] if rows else [False] * n
            if self._learn(buckets, bits, metas) and self._levels(buckets, bits) == levels:
                return seen
        raise redis.RedisError(LAYOUT_UNSETTLED)

    def _remember(self, ids: list[str]) -> None:
        digests = [digest(i) for i in set(ids)]
        added = len(digests)
        for _ in range(LAYOUT_ATTEMPTS):
            now_ms = self._now_ms()
            bucket = self.layout.bucket_of(now_ms)
            bits = self._bits_for([bucket], now_ms)[bucket]
            with self._lock:
                level = level_for(self._counts.get(bucket, 0) + added, bits)
            meta, expire_at_ms = self.layout.meta_key(bucket), self.layout.expire_at_ms(bucket)
            commands: list[Command] = [
                (b"HSETNX", meta, b"bits", bits),
                (b"HINCRBY", meta, b"ids", added),
                (b"PEXPIREAT", meta, expire_at_ms),
                (b"HGET", meta, b"bits"),
            ]
            groups: dict[bytes, list[bytes]] = {}
            prefix = self.layout.set_prefix(bucket, level)
            shift = 64 - level_bits(bits, level)
            for member, source in digests:
                groups.setdefault(b"%s%d" % (prefix, source >> shift), []).append(b"%d" % member)
            for key, members in groups.items():
                # Adjacent: a set is without its expiry only between two commands
                # of one packet (and the next record to it sets the expiry anyway).
                commands += [(b"SADD", key, *members), (b"PEXPIREAT", key, expire_at_ms)]
            ahead = self._prepare_next(bucket, now_ms)
            replies = self._execute(commands + (ahead[1] if ahead else []))
            if ahead:
                self._learn([bucket + 1], {bucket + 1: ahead[0]}, replies[-1:])
            if self._learn([bucket], {bucket: bits}, [[replies[3], replies[1]]]):
                return
            # Another instance fixed the bucket's shards first: record again with
            # its choice (the sets written above expire with the bucket, unread).
            added = 0
        raise redis.RedisError(LAYOUT_UNSETTLED)

    def _levels(self, buckets: Iterable[int], bits: dict[int, int]) -> dict[int, int]:
        """The highest level of each bucket, by the counts last read; -1 for a bucket
        that held no id then (nothing to ask: a look-up that reads back a count above
        0 asks again)."""
        with self._lock:
            counts = self._counts
            return {
                b: level_for(counts[b], bits[b]) if counts.get(b, 0) > 0 else -1 for b in buckets
            }

    def _prepare_next(self, bucket: int, now_ms: int) -> tuple[int, list[Command]] | None:
        """Proposed bits and commands fixing the next bucket's shards ahead of time.

        Once half of ``bucket`` is past, until the next bucket's bits are known, so
        that a bucket change costs no extra round trip.
        """
        following = bucket + 1
        if (now_ms - bucket * self.layout.width_ms) * 2 < self.layout.width_ms:
            return None
        with self._lock:
            if following in self._bits:
                return None
            bits = self.layout.propose_bits(following, now_ms, self._counts)
        meta = self.layout.meta_key(following)
        return bits, [
            (b"HSETNX", meta, b"bits", bits),
            (b"PEXPIREAT", meta, self.layout.expire_at_ms(following)),
            (b"HMGET", meta, b"bits", b"ids"),
        ]

    def _bits_for(self, buckets: Iterable[int], now_ms: int) -> dict[int, int]:
        """Shard bits of each bucket: as stored when known, else this instance's proposal."""
        with self._lock:
            oldest = self.layout.live_buckets(now_ms).start
            for cache in (self._bits, self._counts):
                for old in [b for b in cache if b < oldest - 2]:
                    del cache[old]
            return {
                b: self._bits[b]
                if b in self._bits
                else self.layout.propose_bits(b, now_ms, self._counts)
                for b in buckets
            }

    def _learn(self, buckets: Iterable[int], used: dict[int, int], metas: list[Any]) -> bool:
        """Take in the buckets' stored ``[bits, ids]``; False if some bits differ from ``used``.

        Raises RedisError (a BackendError for the caller) when a bucket's hash holds
        something else than counts: retrying cannot help, but crashing would not either.
        """
        settled = True
        with self._lock:
            for bucket, (bits, count) in zip(buckets, metas, strict=True):
                if count is not None:
                    self._counts[bucket] = _stored_int(bucket, count, 2**62)
                if bits is None:
                    continue  # nothing recorded in that bucket yet
                self._bits[bucket] = stored = _stored_int(bucket, bits, 64)
                settled = settled and stored == used[bucket]
        return settled

    def _now_ms(self) -> int:
        """Now by Redis's clock (or the given one), in ms since the epoch."""
        if self._clock is not None:
            return math.floor(self._clock() * 1000)
        if self._offset_s is None:
            self._execute([])
        assert self._offset_s is not None
        return math.floor((time.time() + self._offset_s) * 1000)

    def _execute(self, commands: list[Command]) -> list[Any]:
        """One round trip; with TIME in front unless a clock was given. Raises error replies."""
        if self._clock is not None:
            replies = execute_many(self._client, commands)
            raise_first_error(replies)
            return replies
        # Redis answers TIME after it is sent: the estimate errs ahead, by at most
        # the trip's time, well within the margin.
        sent = time.time()
        replies = execute_many(self._client, [(b"TIME",), *commands])
        raise_first_error(replies)
        seconds, micros = replies.pop(0)
        self._offset_s = int(seconds) + int(micros) / 1_000_000 - sent
        return replies


def _stored_int(bucket: int, value: Any, limit: int) -> int:
    """``value`` of bucket ``bucket``'s hash as an int from 0 to ``limit``; else RedisError."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= limit:
        raise redis.RedisError(f"dedup: the hash of bucket {bucket} holds {value!r}, not a count")
    return number


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


__all__ = ["KEY_PREFIX", "DedupStore", "MemoryDedup", "RedisDedup"]
