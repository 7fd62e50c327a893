"""Where the Redis dedup store keeps an id: digests, time buckets, shards. No I/O.

An id is remembered as a 64-bit integer (half of its 128-bit BLAKE2b digest) in a
Redis set, ``dedup:<width_ms>:<bucket>:<shard>``:

- **Time buckets.** Time (Redis's clock, in milliseconds since the epoch) is cut
  into buckets ``width_ms = ceil(ttl_ms / BUCKETS_PER_TTL)`` wide (never narrower
  than the clock margin, which only matters for TTLs under 20 s). An id recorded
  in bucket ``b`` goes into a set of that bucket, and every set of the bucket
  expires as a whole at ``(b + 1) * width_ms + ttl_ms + margin_ms``: at least the
  TTL after the last moment of the bucket, so an id is remembered for at least
  the TTL and at most one bucket (plus the margin) longer.
- **Shards and levels.** A bucket's ids are spread over sets by the other half of
  the digest, so that each set holds about :data:`TARGET_IDS_PER_SET` integers and
  stays an *intset* (a packed array of 8-byte integers, up to Redis's
  ``set-max-intset-entries``, 512 by default): about 9-11 bytes per id, where a key
  per id costs about 120. The number of sets follows the volume the bucket actually
  gets: its *base* ``bits`` (``2 ** bits`` sets at level 0, in
  ``dedup:<width_ms>:<bucket>:<shard>``) is decided once, from the volume of the
  buckets before it (0 when there were none: a fresh store starts with one set),
  and stored in the bucket's hash ``dedup:<width_ms>:<bucket>`` (fields ``bits``
  and ``ids``, the count of ids recorded there). When the count outgrows a level,
  new ids go to the next level, :data:`LEVEL_STEP_BITS` more bits
  (``dedup:<width_ms>:<bucket>:<level>:<shard>``); earlier levels keep their ids.
  The level follows from the count alone, so every instance agrees; a look-up asks
  every level up to the one of the count it last saw, and asks again if the count
  it reads back says a higher level exists. A steady service sizes each bucket
  from the one before and stays at level 0; a quiet or new one pays a few levels
  instead of a thousand sets for a guess.
- **Collisions.** Two ids share a remembered value only if their digests agree on
  64 bits *and* land in the same shard: a never-seen id is taken for a duplicate
  with a probability of (ids in the sets it is looked up in) / 2**64, about
  4 x 128 / 2**64 = 3e-17 per look-up whatever the rate, since the shard bits
  grow with the volume (a flat 64-bit digest would give ids remembered / 2**64).

The width is part of the key, so stores with different TTLs never misread each
other's sets (they do not see each other's ids either).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

BUCKETS_PER_TTL = 1
"""The TTL is cut into this many buckets: ids live up to one bucket longer than the
TTL, and a look-up asks buckets + 1 sets per id (one more for a few seconds around a
bucket change). One bucket: at most twice the TTL, 2 sets per id; two buckets cost
about 20% of the pipeline's throughput in look-up commands for a quarter less memory
(measured with ``python -m benchmarks --phases pipeline``)."""

TARGET_IDS_PER_SET = 128
"""Ids per set aimed at; 4-8 times below the intset limit of 512, for growth."""

MAX_SHARD_BITS = 24
"""At most 16.7 million sets per bucket (2.1 billion ids at the target)."""

LEVEL_STEP_BITS = 5
"""Each level has 32 times the sets of the one below. Bigger steps mean fewer levels
for a look-up to ask (at most 5 from one set to :data:`MAX_SHARD_BITS`); smaller ones
fewer sets half empty when a level has just begun (measured with
``python -m benchmarks.dedup_memory``)."""

CLOCK_MARGIN_S = 5.0
"""Error allowed between instances' view of Redis's clock (and late commands)."""

KEY_PREFIX = b"dedup:"


_HALVES = struct.Struct(">qQ")


def digest(message_id: str) -> tuple[int, int]:
    """``(member, shard_source)`` of ``message_id``: two independent 64-bit halves.

    ``member`` is signed (what a Redis intset stores); ``shard_source`` unsigned.
    """
    raw = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    member, source = _HALVES.unpack(raw)
    return member, source


def level_for(count: int, base_bits: int) -> int:
    """The level of a bucket holding ``count`` ids whose level 0 has ``base_bits``."""
    needed = bits_for_volume(count)
    if needed <= base_bits:
        return 0
    top = max(0, math.ceil((MAX_SHARD_BITS - base_bits) / LEVEL_STEP_BITS))
    return min(top, math.ceil((needed - base_bits) / LEVEL_STEP_BITS))


def level_bits(base_bits: int, level: int) -> int:
    """Shard bits of ``level`` in a bucket whose level 0 has ``base_bits``."""
    return min(MAX_SHARD_BITS, base_bits + LEVEL_STEP_BITS * level) if level else base_bits


def shard_of(shard_source: int, bits: int) -> int:
    """The shard (0 to ``2 ** bits - 1``) of a digest: the top ``bits`` bits."""
    return shard_source >> (64 - bits)


def bits_for_volume(ids: float) -> int:
    """Shard bits that put about :data:`TARGET_IDS_PER_SET` (half to all of it) in each set."""
    if ids <= TARGET_IDS_PER_SET:
        return 0
    return min(MAX_SHARD_BITS, math.ceil(math.log2(ids / TARGET_IDS_PER_SET)))


@dataclass(frozen=True, slots=True)
class BucketLayout:
    """The bucket arithmetic of one TTL; every time is Redis's, in ms since the epoch."""

    ttl_ms: int
    width_ms: int
    margin_ms: int

    @classmethod
    def for_ttl(
        cls,
        ttl_s: float,
        margin_s: float = CLOCK_MARGIN_S,
        buckets_per_ttl: int = BUCKETS_PER_TTL,
    ) -> BucketLayout:
        """The layout of ``ttl_s``.

        Raises ValueError unless ``ttl_s > 0``, ``margin_s >= 0`` and ``buckets_per_ttl >= 1``.
        """
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be above zero, got {ttl_s}")
        if not margin_s >= 0:
            raise ValueError(f"margin_s must be zero or more, got {margin_s}")
        if buckets_per_ttl < 1:
            raise ValueError(f"buckets_per_ttl must be 1 or more, got {buckets_per_ttl}")
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        margin_ms = math.ceil(margin_s * 1000)
        # Never narrower than the margin, so that a look-up checks at most
        # buckets_per_ttl + 3 buckets (it matters only for TTLs of seconds).
        width_ms = max(1, margin_ms, math.ceil(ttl_ms / buckets_per_ttl))
        return cls(ttl_ms, width_ms, margin_ms)

    def bucket_of(self, now_ms: int) -> int:
        """The bucket an id recorded at ``now_ms`` goes into."""
        return now_ms // self.width_ms

    def live_buckets(self, now_ms: int) -> range:
        """Buckets a look-up at ``now_ms`` must check, oldest first.

        Every bucket whose sets may hold an id recorded less than the TTL ago, even
        by an instance whose clock is up to the margin ahead or behind: those not
        yet expired, and the next one when ``now_ms`` is within the margin of it.
        """
        first = (now_ms - self.ttl_ms - self.margin_ms) // self.width_ms
        return range(first, (now_ms + self.margin_ms) // self.width_ms + 1)

    def expire_at_ms(self, bucket: int) -> int:
        """When every key of ``bucket`` expires (absolute, so every instance agrees)."""
        return (bucket + 1) * self.width_ms + self.ttl_ms + self.margin_ms

    def propose_bits(self, bucket: int, now_ms: int, counts: Mapping[int, int]) -> int:
        """Base shard bits to propose for ``bucket`` from the ids ``counts`` of known buckets.

        Sized for the larger of the two buckets before it and the pace of a bucket
        still filling (once a quarter of it has passed), projected to a whole
        bucket; 0 (one set, levels grow from there) when all of those are empty or
        unknown. Only a proposal: the first one stored in Redis wins.
        """
        volume = float(max(counts.get(bucket - 1, 0), counts.get(bucket - 2, 0)))
        current = self.bucket_of(now_ms)
        if current in (bucket, bucket - 1) and current in counts:
            elapsed = (now_ms - current * self.width_ms) / self.width_ms
            if elapsed >= 0.25:
                volume = max(volume, counts[current] / elapsed)
        return bits_for_volume(volume)

    def meta_key(self, bucket: int) -> bytes:
        """The hash of ``bucket``: its shard ``bits`` and the ``ids`` recorded in it."""
        return b"%s%d:%d" % (KEY_PREFIX, self.width_ms, bucket)

    def set_prefix(self, bucket: int, level: int) -> bytes:
        """The start of the keys of ``bucket``'s sets at ``level`` (the shard follows)."""
        if level == 0:
            return self.meta_key(bucket) + b":"
        return self.meta_key(bucket) + b":%d:" % level

    def set_key(self, bucket: int, shard: int, level: int = 0) -> bytes:
        """The set of ``bucket`` holding the ids of ``shard`` at ``level``."""
        return self.set_prefix(bucket, level) + b"%d" % shard


__all__ = [
    "BUCKETS_PER_TTL",
    "CLOCK_MARGIN_S",
    "KEY_PREFIX",
    "LEVEL_STEP_BITS",
    "MAX_SHARD_BITS",
    "TARGET_IDS_PER_SET",
    "BucketLayout",
    "bits_for_volume",
    "digest",
    "level_bits",
    "level_for",
    "shard_of",
]
