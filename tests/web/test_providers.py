"""GET /providers and PATCH /providers/<name>: outages and recoveries without a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from pushtrio.contract.errors import ProviderError
from pushtrio.contract.notification import Notification
from pushtrio.contract.outcome import DeviceCounts
from pushtrio.web.server import serve_web

from .conftest import Running, make_handles, notification, open_feed, receive_json


async def test_get_lists_every_provider_with_counters_and_simulation(served: Running) -> None:
    async with served.client() as client:
        response = await client.get("/providers")
    assert response.status_code == 200
    providers = response.json()["providers"]
    assert sorted(providers) == ["apns", "fcm", "firebase"]
    fcm = providers["fcm"]
    assert fcm["mock"] == {"success_rate": 1.0, "latency_ms": 0.0, "failure": "mixed"}
    assert fcm["stats"]["healthy"] is True
    assert set(fcm["stats"]) >= {"sent", "failed_transient", "failed_permanent"}


async def send_and_wait(running: Running, message_id: str) -> dict[str, Any]:
    """POST one fcm notification and return its outcome event from the feed."""
    async with open_feed(running.ws) as ws, running.client() as client:
        body = notification("u-providers", id=message_id, provider="fcm")
        assert (await client.post("/send", json=body)).status_code == 202
        while True:
            event = await receive_json(ws)
            if event.get("id") == message_id:
                return event


async def test_patch_makes_an_outage_and_a_recovery(served: Running) -> None:
    async with served.client() as client:
        changed = await client.patch(
            "/providers/fcm", json={"success_rate": 0, "failure": "permanent", "latency_ms": 2}
        )
    assert changed.status_code == 200
    assert changed.json()["mock"] == {
        "success_rate": 0.0,
        "latency_ms": 2.0,
        "failure": "permanent",
    }
    failed = await send_and_wait(served, "outage-1")
    assert failed["event"] == "failed"
    assert failed["error"] in ("unregistered token", "invalid payload")  # permanent ones

    async with served.client() as client:
        recovered = await client.patch("/providers/fcm", json={"success_rate": 1.0})
        listed = (await client.get("/providers")).json()["providers"]["fcm"]
    assert recovered.status_code == 200
    assert listed["mock"]["failure"] == "permanent"  # only what was sent changed
    assert (await send_and_wait(served, "outage-2"))["event"] == "delivered"
    assert listed["stats"]["failed_permanent"] >= 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"success_rate": 1.5}, "success_rate"),
        ({"success_rate": "0.5"}, "success_rate"),
        ({"success_rate": True}, "success_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": 60_001}, "latency_ms"),
        ({"failure": "sometimes"}, "failure"),
        ({"succes_rate": 0.5}, "succes_rate"),
        ([1, 2], None),
    ],
)
async def test_patch_refuses_bad_changes_and_changes_nothing(
    served: Running, body: Any, field: str | None
) -> None:
    async with served.client() as client:
        response = await client.patch("/providers/fcm", json=body)
        after = (await client.get("/providers")).json()["providers"]["fcm"]["mock"]
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert after == {"success_rate": 1.0, "latency_ms": 0.0, "failure": "mixed"}


async def test_patch_of_an_unknown_provider_is_404(served: Running) -> None:
    async with served.client() as client:
        response = await client.patch("/providers/pigeon", json={"success_rate": 0})
    assert response.status_code == 404
    assert "pigeon" in response.json()["error"]


class Real:
    """A provider that is not a mock: no simulation to change."""

    name = "real"

    async def send(self, notification: Notification, attempt: int) -> None:
        await trio.lowlevel.checkpoint()

    async def send_many(
        self, notifications: Sequence[Notification], attempt: int
    ) -> list[ProviderError | DeviceCounts | None]:
        await trio.lowlevel.checkpoint()
        return [None] * len(notifications)


async def test_a_provider_that_is_not_a_mock_is_listed_but_not_changed() -> None:
    import httpx

    handles = dataclasses.replace(make_handles(), providers={"real": Real()})
    shutdown = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [address] = await nursery.start(serve_web, handles, shutdown)
            async with httpx.AsyncClient(base_url=address) as client:
                listed = await client.get("/providers")
                patched = await client.patch("/providers/real", json={"success_rate": 0})
            shutdown.set()
    assert listed.json() == {
        "providers": {
            "real": {
                "stats": {
                    "sent": 0,
                    "failed_transient": 0,
                    "failed_permanent": 0,
                    "consecutive_failures": 0,
                    "healthy": True,
                }
            }
        }
    }
    assert patched.status_code == 409
