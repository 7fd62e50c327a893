"""Redis memory per remembered id, and the cost of a batch, for each dedup layout.

    python -m benchmarks.dedup_memory                 1,000,000 ids per layout (a few minutes)
    python -m benchmarks.dedup_memory --ids 200000    quicker, same table

Runs a redis-server of its own (a free port on loopback, no persistence) and stops
it on any exit: the shared test Redis is flushed by other people's tests. For each
layout it records ``--ids`` ids (32-character hex, like the ids the service makes)
in batches of 500, and reads ``used_memory`` of ``INFO memory`` before and after:
the difference divided by the ids is the figure. It then times look-ups of 500
ids never seen (the common case) and records of 500 new ids, each through
``run_redis`` as the service does (median of ``--repeat`` batches, in ms per
batch; the machine is shared, so read them as rough).

pushtrio's own layout (:class:`pushtrio.stores.dedup.RedisDedup`) runs on a simulated
clock: ``--rate`` ids per second with ``DEDUP_TTL = ids / rate``, so that the ids
fill whole buckets, as at any rate in a steady state (the shard count follows the
volume, so the ids per set, and the bytes per id, do not depend on rate or TTL).
Its "steady" rows start with the buckets before already sized by that rate; the
"cold start" row starts on an empty Redis. Last, the rate limiter's sorted sets are
measured for the README's sizing formula.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis
import trio
from rich.console import Console
from rich.table import Table
from tests.support.ports import free_port

from pushtrio.stores.dedup import RedisDedup
from pushtrio.stores.dedup_layout import BucketLayout
from pushtrio.stores.limiter.redis import RedisLimiter
from pushtrio.stores.redis_client import connect, execute_many, raise_first_error, run_redis

BATCH = 500
DAY_MS = 86_400_000

Command = tuple[bytes | int, ...]
Layout = Callable[[Sequence[str]], list[Command]]


@dataclass(frozen=True, slots=True)
class Row:
    """One layout's figures."""

    layout: str
    bytes_per_id: float
    keys: int
    encoding: str
    lookup: Cost
    lookup_commands: int
    record: Cost
    record_commands: int


# -- a private redis-server -------------------------------------------------------------


@contextlib.contextmanager
def private_redis(server: str) -> Iterator[str]:
    """Run ``server`` on a free loopback port without persistence; yield ``host:port``.

    Stopped (SIGTERM, then SIGKILL after 10 s) and its folder removed on any exit.
    Raises RuntimeError if it does not answer PING within 15 s.
    """
    folder = Path(tempfile.mkdtemp(prefix="pushtrio-dedup-bench-"))
    port = free_port()
    command = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder), "--logfile", str(folder / "log")]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        probe = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.RedisError):
                if probe.ping():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server} on port {port} did not start")
            time.sleep(0.05)
        probe.close()
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


# -- the layouts compared ----------------------------------------------------------------


def digest16(message_id: str) -> bytes:
    return hashlib.blake2b(message_id.encode(), digest_size=16).digest()


def plain_keys(ids: Sequence[str]) -> list[Command]:
    """Today's layout: ``SET dedup:<id> 1 PX <ttl>``."""
    return [(b"SET", b"dedup:" + i.encode(), b"1", b"PX", DAY_MS) for i in ids]


def plain_lookup(ids: Sequence[str]) -> list[Command]:
    return [(b"EXISTS", b"dedup:" + i.encode()) for i in ids]


def digest_keys(ids: Sequence[str]) -> list[Command]:
    """A fixed-size 16-byte digest as the key: ``SET dedup:<digest> 1 PX <ttl>``."""
    return [(b"SET", b"dedup:" + digest16(i), b"1", b"PX", DAY_MS) for i in ids]


def digest_lookup(ids: Sequence[str]) -> list[Command]:
    return [(b"EXISTS", b"dedup:" + digest16(i)) for i in ids]


def bucket_set(ids: Sequence[str]) -> list[Command]:
    """One set per time bucket, 16-byte digests, expiring as a whole (a hash table)."""
    return [
        (b"SADD", b"dedup:b:1", *[digest16(i) for i in ids]),
        (b"PEXPIRE", b"dedup:b:1", DAY_MS),
    ]


def bucket_set_lookup(ids: Sequence[str]) -> list[Command]:
    # Two live buckets: one command each for the whole batch.
    members = [digest16(i) for i in ids]
    return [(b"SMISMEMBER", b"dedup:b:%d" % b, *members) for b in (0, 1)]


def sharded_hashes(shards: int) -> tuple[Layout, Layout]:
    """Per bucket ``shards`` hashes of 8-byte digest -> ``1``, in listpack encoding."""

    def key_field(bucket: int, message_id: str) -> tuple[bytes, bytes]:
        raw = digest16(message_id)
        shard = int.from_bytes(raw[8:], "big") % shards
        return b"dedup:h:%d:%d" % (bucket, shard), raw[:8]

    def record(ids: Sequence[str]) -> list[Command]:
        commands: list[Command] = []
        for message_id in ids:
            key, field = key_field(1, message_id)
            commands += [(b"HSET", key, field, b"1"), (b"PEXPIRE", key, DAY_MS)]
        return commands

    def lookup(ids: Sequence[str]) -> list[Command]:
        # Two live buckets, one HMGET per id in each.
        return [(b"HMGET", *key_field(bucket, i)) for bucket in (0, 1) for i in ids]

    return record, lookup


# -- measuring ---------------------------------------------------------------------------


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def encoding_summary(client: redis.Redis) -> str:
    """The encodings of up to 200 keys, most common first."""
    counts: dict[str, int] = {}
    for n, key in enumerate(client.scan_iter(count=1000)):
        if n >= 200:
            break
        name = client.object("encoding", key)
        label = name.decode() if isinstance(name, bytes) else str(name)
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(sorted(counts, key=lambda k: -counts[k]))


def make_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(count)]


@dataclass(frozen=True, slots=True)
class Cost:
    """Median wall time and median CPU time of this process for one batch, in ms."""

    wall_ms: float
    cpu_ms: float


async def timed(call: Callable[[], Any], repeat: int) -> Cost:
    """The cost of ``call()`` (awaited) over ``repeat`` calls; one call first, untimed.

    CPU is this process's (packing, parsing, the thread hop), not Redis's: on a
    shared machine it is steadier than the wall time.
    """
    await call()
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        await call()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return Cost(statistics.median(walls), statistics.median(cpus))


def send(client: redis.Redis, layout: Layout, ids: Sequence[str]) -> None:
    """Build ``layout``'s commands for ``ids`` and run them in one round trip (blocking)."""
    raise_first_error(execute_many(client, layout(ids)))


def commands_sent(client: redis.Redis) -> int:
    """Commands Redis ran so far, by ``INFO commandstats``, INFO itself left out."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def count_commands(client: redis.Redis, call: Callable[[], Any]) -> int:
    """Commands Redis ran for ``call()`` (awaited): the Redis is ours alone."""
    before = commands_sent(client)
    await call()
    return commands_sent(client) - before


async def measure_raw(
    client: redis.Redis, name: str, record: Layout, lookup: Layout, ids: list[str], repeat: int
) -> Row:
    client.flushall()
    before = used_memory(client)
    for start in range(0, len(ids), BATCH):
        await run_redis(partial(send, client, record, ids[start : start + BATCH]))
    grown = used_memory(client) - before
    keys, encoding = int(client.dbsize()), encoding_summary(client)
    fresh = make_ids(BATCH * (repeat + 2), seed=99)
    batches = iter(range(0, len(fresh), BATCH))

    async def record_batch() -> None:
        start = next(batches)
        await run_redis(partial(send, client, record, fresh[start : start + BATCH]))

    lookup_batch = partial(run_redis, partial(send, client, lookup, fresh[:BATCH]))
    return Row(
        name,
        grown / len(ids),
        keys,
        encoding,
        await timed(lookup_batch, repeat),
        await count_commands(client, lookup_batch),
        await timed(record_batch, repeat),
        await count_commands(client, record_batch),
    )


class SimulatedClock:
    """Seconds since the epoch, moved by the benchmark; starts at a bucket boundary."""

    def __init__(self, start_s: float) -> None:
        self.now = start_s

    def __call__(self) -> float:
        return self.now


async def measure_pushtrio(
    client: redis.Redis,
    ids: list[str],
    rate: float,
    repeat: int,
    buckets_per_ttl: int,
    *,
    steady: bool,
) -> Row:
    """RedisDedup with ``DEDUP_TTL = len(ids) / rate`` on a simulated clock."""
    client.flushall()
    ttl_s = len(ids) / rate
    layout = BucketLayout.for_ttl(ttl_s, buckets_per_ttl=buckets_per_ttl)
    # A boundary in Redis's near future: the absolute expiries stay ahead of its clock.
    first = math.ceil(time.time() * 1000 / layout.width_ms) + 1
    clock = SimulatedClock(first * layout.width_ms / 1000)
    store = RedisDedup(client, ttl_s, clock=clock, buckets_per_ttl=buckets_per_ttl)
    before = used_memory(client)
    if steady:
        # The buckets before this run held what this rate puts in a bucket.
        per_bucket = round(rate * layout.width_ms / 1000)
        for bucket in (first - 2, first - 1):
            client.hset(layout.meta_key(bucket), "ids", per_bucket)
            client.pexpire(layout.meta_key(bucket), 3_600_000)
    step_s = BATCH / rate
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        await store.seen_many(batch)  # as the pipeline does: look up, deliver, record
        await store.remember_many(batch)
        clock.now += step_s
    grown = used_memory(client) - before
    # Time batches in the middle of the last bucket filled: N + 1 live buckets, as
    # almost always (one more within the clock margin of a bucket change).
    clock.now -= layout.width_ms / 2000
    keys, encoding = int(client.dbsize()), encoding_summary(client)
    fresh = make_ids(BATCH * (repeat + 2), seed=99)
    batches = iter(range(0, len(fresh), BATCH))

    async def record_batch() -> None:
        start = next(batches)
        await store.remember_many(fresh[start : start + BATCH])

    lookup_batch = partial(store.seen_many, fresh[:BATCH])
    label = "steady" if steady else "cold start"
    return Row(
        f"pushtrio: intsets of digests, {buckets_per_ttl} buckets/TTL ({label})",
        grown / len(ids),
        keys,
        encoding,
        await timed(lookup_batch, repeat),
        await count_commands(client, lookup_batch),
        await timed(record_batch, repeat),
        await count_commands(client, record_batch),
    )


async def limiter_bytes(client: redis.Redis, users: int, per_user: int) -> int:
    """Redis memory of ``users`` rate-limit windows holding ``per_user`` entries each."""
    client.flushall()
    limiter = RedisLimiter(client, limit=per_user, window_s=3600.0)
    ids = make_ids(users * per_user, seed=7)
    before = used_memory(client)
    requests = [(f"user-{n % users}", message_id) for n, message_id in enumerate(ids)]
    for start in range(0, len(requests), BATCH):
        await limiter.acquire_many(requests[start : start + BATCH])
    return used_memory(client) - before


async def measure_limiter(client: redis.Redis, users: int) -> tuple[float, float]:
    """Bytes per window entry and per user key of the rate limiter (32-character ids)."""
    one = await limiter_bytes(client, users, 1)
    ten = await limiter_bytes(client, users, 10)
    per_entry = (ten - one) / (9 * users)
    return per_entry, one / users - per_entry


# -- the run -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dedup_memory",
        description="Redis memory per remembered id for each dedup layout (INFO memory).",
    )
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids per layout")
    parser.add_argument("--rate", type=float, default=2000.0, help="simulated msg/s")
    parser.add_argument("--repeat", type=int, default=20, help="batches timed per figure")
    parser.add_argument("--redis-server", default="redis-server", help="the server binary")
    args = parser.parse_args(argv)
    if args.ids < BATCH or args.rate <= 0 or args.repeat < 1:
        parser.error("--ids must be at least 500, --rate above 0, --repeat at least 1")
    return args


async def measure_all(addr: str, args: argparse.Namespace, console: Console) -> list[Row]:
    client = connect(addr)
    try:
        ids = make_ids(args.ids, seed=1)
        rows: list[Row] = []
        raw: list[tuple[str, Layout, Layout]] = [
            ("SET dedup:<id> 1 PX ttl (before)", plain_keys, plain_lookup),
            ("SET dedup:<16-byte digest> 1 PX ttl", digest_keys, digest_lookup),
            ("one set per bucket, 16-byte digests", bucket_set, bucket_set_lookup),
            (
                "hashes per bucket, 8-byte digest fields, 128/key",
                *sharded_hashes(max(1, args.ids // 128)),
            ),
        ]
        for name, record, lookup in raw:
            rows.append(await measure_raw(client, name, record, lookup, ids, args.repeat))
            console.print(f"[dim]{name}: {rows[-1].bytes_per_id:.1f} B/id[/]")
        for buckets, steady in ((2, True), (2, False), (1, True), (4, True)):
            row = await measure_pushtrio(
                client, ids, args.rate, args.repeat, buckets, steady=steady
            )
            rows.append(row)
            console.print(f"[dim]{row.layout}: {row.bytes_per_id:.1f} B/id[/]")
        per_entry, per_user = await measure_limiter(client, users=10_000)
        console.print(
            f"rate limiter (10,000 users, 1 and 10 entries each, 32-char ids): "
            f"{per_entry:.1f} B per window entry + {per_user:.0f} B per user's key"
        )
        return rows
    finally:
        client.close()


def print_rows(console: Console, rows: list[Row], args: argparse.Namespace) -> None:
    table = Table(
        title=f"Redis memory per remembered id over {args.ids:,} ids (INFO memory used_memory);"
        f" cost of a batch of {BATCH} (medians of {args.repeat})",
        title_justify="left",
    )
    for column in ("layout", "B/id", "keys", "encoding"):
        table.add_column(column, justify="left" if column in ("layout", "encoding") else "right")
    for what in ("look-up", "record"):
        table.add_column(f"{what}: cmds", justify="right")
        table.add_column("wall ms", justify="right")
        table.add_column("CPU ms", justify="right")
    for row in rows:
        table.add_row(
            row.layout,
            f"{row.bytes_per_id:.1f}",
            f"{row.keys:,}",
            row.encoding,
            f"{row.lookup_commands:,}",
            f"{row.lookup.wall_ms:.1f}",
            f"{row.lookup.cpu_ms:.1f}",
            f"{row.record_commands:,}",
            f"{row.record.wall_ms:.1f}",
            f"{row.record.cpu_ms:.1f}",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    started = time.monotonic()
    with private_redis(args.redis_server) as addr:
        probe = redis.Redis.from_url(f"redis://{addr}")
        server = probe.info("server")
        limits = {
            name: probe.config_get(name)[name]
            for name in ("set-max-intset-entries", "hash-max-listpack-entries")
        }
        probe.close()
        console.print(
            f"private Redis {server['redis_version']} on {addr}, "
            + ", ".join(f"{k} {v}" for k, v in limits.items())
        )
        rows = trio.run(measure_all, addr, args, console)
    print_rows(console, rows, args)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(
        f"[dim]{os.cpu_count()} cores, load average {load}; simulated rate {args.rate:,.0f}/s; "
        f"took {time.monotonic() - started:.0f} s[/]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
