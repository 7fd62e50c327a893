"""Redis memory per remembered id for a *fresh* dedup store, at several id rates.

A service that starts (or runs quietly) pays for its first bucket whatever layout
guess that bucket was made with; this phase measures it. For each rate, a
:class:`~pushtrio.stores.dedup.RedisDedup` with the default TTL (24 h) on an empty,
private Redis records ids one second of simulated time at a time (``rate`` ids a
batch, as the pipeline records what it delivered), looking each batch up first,
and reads ``used_memory`` after the first 1,000, 10,000 and 100,000 ids.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from pushtrio.stores.dedup import RedisDedup
from pushtrio.stores.redis_client import connect

from .dedup_memory import SimulatedClock, make_ids, private_redis, used_memory

RATES: tuple[float, ...] = (10.0, 100.0, 1000.0)
CHECKPOINTS: tuple[int, ...] = (1_000, 10_000, 100_000)
TTL_S = 86_400.0


@dataclass(frozen=True, slots=True)
class FreshStore:
    rate: float
    bytes_per_id: dict[int, float]
    """Ids remembered -> Redis memory per id then."""
    keys: int


async def measure_fresh(
    rates: Sequence[float] = RATES, checkpoints: Sequence[int] = CHECKPOINTS
) -> list[FreshStore]:
    """Bytes per id at each checkpoint, per rate, each on an empty private Redis."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not on PATH")
    ids = make_ids(max(checkpoints), seed=7)
    results = []
    with private_redis(server) as addr:
        client = connect(addr)
        try:
            # A first, unmeasured run: Redis's own first allocations (client
            # buffers, tables growing) are not the store's.
            await _fill(client, ids[:20_000], 1000.0, ())
            for rate in rates:
                results.append(await _fill(client, ids, rate, checkpoints))
        finally:
            client.close()
    return results


async def _fill(
    client: redis.Redis, ids: Sequence[str], rate: float, checkpoints: Sequence[int]
) -> FreshStore:
    """Record ``ids`` at ``rate`` on an emptied Redis; bytes per id at each checkpoint."""
    client.flushall()
    clock = SimulatedClock(math.floor(time.time()))
    store = RedisDedup(client, TTL_S, clock=clock)
    before = used_memory(client)
    batch = max(1, min(500, round(rate)))
    figures: dict[int, float] = {}
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        await store.seen_many(chunk)
        await store.remember_many(chunk)
        clock.now += len(chunk) / rate
        done = start + len(chunk)
        for mark in checkpoints:
            if start < mark <= done:
                figures[mark] = (used_memory(client) - before) / mark
    return FreshStore(rate, figures, int(client.dbsize()))
