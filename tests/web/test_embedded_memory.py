"""The embedded default frees what it has settled (issue 8, item 5).

``pushtrio serve`` with no configuration, as a process: notifications through
``POST /send`` after a warm-up must grow the process by less than 25 MiB per 30,000
(before the fix it grew by about 4.7 KB each, 140 MiB per 30,000). The suite sends
10,000 (``/send`` costs about 3 ms of server CPU each); set PUSHTRIO_MEMORY_TEST_N=30000
for the full figure.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import psutil
import trio

from .conftest import free_port

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
        with trio.fail_after(timeout_s):
            # Polling another process's counter: there is no event to wait on.
            while (await client.get("/metrics")).json()["processed_messages"] < n:  # noqa: ASYNC110
                await trio.sleep(0.1)


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def test_embedded_mode_frees_settled_records(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "PROVIDER_LATENCY": "0",
        "PROVIDER_SUCCESS_RATE": "1",
        "RATE_LIMIT_PER_USER": "1000000",
        "LOG_LEVEL": "warning",
    }
    for name in ("KAFKA_BROKERS", "REDIS_ADDR", "OUTCOME_LOG", "MOCK_PROVIDER_JOURNAL"):
        env.pop(name, None)
    log = (tmp_path / "serve.log").open("wb")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pushtrio", "serve"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with trio.fail_after(240):
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                while True:
                    try:
                        if (await client.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert process.returncode is None, (tmp_path / "serve.log").read_text()
                    await trio.sleep(0.05)
            await send_many(base, "warm", WARM_UP)
            await wait_processed(base, WARM_UP, 60)
            before = rss_mib(process.pid)
            started = time.monotonic()
            await send_many(base, "load", MEASURED)
            await wait_processed(base, WARM_UP + MEASURED, 120)
            took = time.monotonic() - started
            after = rss_mib(process.pid)
    finally:
        process.terminate()
        with trio.move_on_after(30, shield=True):
            await process.wait()
        process.kill()
        log.close()
    print(
        f"\nembedded: RSS {before:.1f} -> {after:.1f} MiB over {MEASURED} notifications "
        f"({(after - before) * 2**20 / MEASURED:.0f} bytes each; {MEASURED / took:.0f}/s)"
    )
    assert after - before < GROWTH_LIMIT_MIB
