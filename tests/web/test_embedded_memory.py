"""The embedded default frees what it has settled (issue 8, item 5).

``pushtrio serve`` with no configuration, as a process: notifications through
``POST /send`` after a warm-up must grow the process by less than 25 MiB per 30,000
(before the fix it grew by about 4.7 KB each, 140 MiB per 30,000). The suite sends
10,000 (``/send`` costs about 3 ms of server CPU each); set PUSHTRIO_MEMORY_TEST_N=30000
for the full figure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import psutil
import trio

from ..support.process import ServeProcess
from ..support.waiting import wait_until

WARM_UP = 3_000
MEASURED = int(os.environ.get("PUSHTRIO_MEMORY_TEST_N", "10000"))
GROWTH_LIMIT_MIB = 25 * MEASURED / 30_000
SENDERS = 16


async def send_many(base: str, prefix: str, n: int) -> None:
    """POST ``n`` notifications with SENDERS concurrent clients; every answer must be 202."""

    async def sender(k: int, client: httpx.AsyncClient) -> None:
        for i in range(k, n, SENDERS):
            body = {"id": f"{prefix}-{i}", "user_id": f"u{i % 1000}", "title": "t", "body": "b"}
            response = await client.post("/send", json=body)
            assert response.status_code == 202, response.text

    async with httpx.AsyncClient(base_url=base, timeout=30) as client, trio.open_nursery() as n_:
        for k in range(SENDERS):
            n_.start_soon(sender, k, client)


async def wait_processed(base: str, n: int, timeout_s: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def processed() -> bool:
            return bool((await client.get("/metrics")).json()["processed_messages"] >= n)

        await wait_until(processed, timeout_s, f"{n} notifications processed", every_s=0.1)


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def test_embedded_mode_frees_settled_records(tmp_path: Path) -> None:
    env = {
        "PROVIDER_LATENCY": "0",
        "PROVIDER_SUCCESS_RATE": "1",
        "RATE_LIMIT_PER_USER": "1000000",
    }
    unset = ("KAFKA_BROKERS", "REDIS_ADDR", "OUTCOME_LOG", "MOCK_PROVIDER_JOURNAL")
    with ServeProcess(env, tmp_path / "serve.log", unset=unset) as process:
        with trio.fail_after(240):
            base = await process.wait_ready_async(60)

            async def healthy() -> bool:
                try:
                    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                        return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(healthy, timeout_s=60, what="serve to answer /health")
            await send_many(base, "warm", WARM_UP)
            await wait_processed(base, WARM_UP, 60)
            before = rss_mib(process.proc.pid)
            started = time.monotonic()
            await send_many(base, "load", MEASURED)
            await wait_processed(base, WARM_UP + MEASURED, 120)
            took = time.monotonic() - started
            after = rss_mib(process.proc.pid)
    print(
        f"\nembedded: RSS {before:.1f} -> {after:.1f} MiB over {MEASURED} notifications "
        f"({(after - before) * 2**20 / MEASURED:.0f} bytes each; {MEASURED / took:.0f}/s)"
    )
    assert after - before < GROWTH_LIMIT_MIB
