"""PUT/GET/DELETE /users/{user_id}/devices: the device registry over HTTP.

Most tests serve the app alone (``serve_web`` with :func:`make_handles`) over a
registry they hold; the admin token and the wiring are checked on the whole service.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import unquote

import httpx
import orjson
import pytest
import trio

from pushtrio.contract.errors import BackendError
from pushtrio.contract.schema import MAX_TOKEN_CHARS
from pushtrio.stores.devices import MAX_DEVICES_PER_USER, Device, DeviceRegistry, MemoryDevices
from pushtrio.web.server import serve_web

from .conftest import TOKEN, Running, make_handles

DEADLINE_S = 20.0


@asynccontextmanager
async def open_client(registry: DeviceRegistry) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the app alone, served over ``registry``."""
    handles = dataclasses.replace(make_handles(), devices=registry)
    shutdown = trio.Event()
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            [address] = await nursery.start(serve_web, handles, shutdown)
            async with httpx.AsyncClient(base_url=address, timeout=10.0) as client:
                yield client
            shutdown.set()


@pytest.fixture
def registry() -> MemoryDevices:
    return MemoryDevices()


@pytest.fixture
async def client(registry: MemoryDevices) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(registry) as client:
        yield client


async def test_put_registers_then_answers_200_for_a_known_token(
    client: httpx.AsyncClient, registry: MemoryDevices
) -> None:
    first = await client.put("/users/u1/devices/tok-1", json={"provider": "fcm"})
    again = await client.put("/users/u1/devices/tok-1", json={"provider": "fcm"})
    moved = await client.put("/users/u1/devices/tok-1", json={"provider": "apns"})
    assert first.status_code == 201
    assert first.json() == {"user_id": "u1", "provider": "fcm", "token": "tok-1"}
    assert again.status_code == 200
    assert again.json() == first.json()
    assert moved.status_code == 200
    assert moved.json() == {"user_id": "u1", "provider": "apns", "token": "tok-1"}
    assert await registry.devices("u1") == [Device("apns", "tok-1")]


async def test_get_lists_the_devices_of_one_user(
    client: httpx.AsyncClient, registry: MemoryDevices
) -> None:
    await registry.put("u1", Device("fcm", "b"))
    await registry.put("u1", Device("apns", "a:1"))
    await registry.put("u2", Device("fcm", "other"))
    listed = await client.get("/users/u1/devices")
    empty = await client.get("/users/nobody@example.com/devices")
    assert listed.status_code == 200
    assert listed.json() == {
        "user_id": "u1",
        "devices": [{"provider": "apns", "token": "a:1"}, {"provider": "fcm", "token": "b"}],
    }
    assert empty.status_code == 200
    assert empty.json() == {"user_id": "nobody@example.com", "devices": []}


async def test_delete_forgets_a_device_then_answers_404(
    client: httpx.AsyncClient, registry: MemoryDevices
) -> None:
    await registry.put("u1", Device("fcm", "gone"))
    await registry.put("u1", Device("fcm", "kept"))
    deleted = await client.delete("/users/u1/devices/gone")
    again = await client.delete("/users/u1/devices/gone")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert again.status_code == 404
    assert "gone" in again.json()["error"]
    assert await registry.devices("u1") == [Device("fcm", "kept")]


@pytest.mark.parametrize("user_id", ["bad%20user", "a" * 129, "semi%3Bcolon"])
@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
async def test_a_bad_user_id_is_400(
    client: httpx.AsyncClient, registry: MemoryDevices, method: str, user_id: str
) -> None:
    path = f"/users/{user_id}/devices" + ("" if method == "GET" else "/tok")
    response = await client.request(
        method, path, json={"provider": "fcm"} if method == "PUT" else None
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "user_id"
    assert await registry.devices(unquote(user_id)) == []


@pytest.mark.parametrize(
    "token",
    ["with%20space", "x" * (MAX_TOKEN_CHARS + 1), "pl%2Bus", "%C3%BC"],
)
async def test_a_bad_token_is_400(
    client: httpx.AsyncClient, registry: MemoryDevices, token: str
) -> None:
    response = await client.put(f"/users/u1/devices/{token}", json={"provider": "fcm"})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "token"
    assert response.json()["error"].startswith("token must be")
    assert await registry.devices("u1") == []


async def test_a_token_with_an_encoded_slash_is_refused(
    client: httpx.AsyncClient, registry: MemoryDevices
) -> None:
    response = await client.put("/users/u1/devices/a%2Fb", json={"provider": "fcm"})
    # The ASGI path arrives decoded, so today no route matches (404 "no such
    # endpoint") and the handler's 400 is never reached; either refuses the device.
    assert response.status_code in (400, 404)
    assert response.json()["error"]
    assert await registry.devices("u1") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "provider"),
        ({"provider": None}, "provider"),
        ({"provider": 1}, "provider"),
        ({"provider": "pigeon"}, "provider"),
        ({"provider": ""}, "provider"),
        ({"provider": "fcm", "platform": "android"}, "platform"),
        ({"token": "t", "provider": "fcm"}, "token"),
        ([{"provider": "fcm"}], None),
        ("fcm", None),
        (None, None),
    ],
)
async def test_a_bad_body_is_400_naming_the_field(
    client: httpx.AsyncClient, registry: MemoryDevices, body: Any, field: str | None
) -> None:
    response = await client.put(
        "/users/u1/devices/tok",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert await registry.devices("u1") == []


async def test_a_body_that_is_not_json_is_refused(client: httpx.AsyncClient) -> None:
    not_json = await client.put(
        "/users/u1/devices/tok", content=b"{", headers={"Content-Type": "application/json"}
    )
    plain = await client.put("/users/u1/devices/tok", content=b"fcm")
    assert not_json.status_code == 415
    assert plain.status_code == 415


async def test_a_new_device_past_the_limit_is_409_a_known_one_still_200(
    client: httpx.AsyncClient, registry: MemoryDevices
) -> None:
    for i in range(MAX_DEVICES_PER_USER):
        await registry.put("u1", Device("fcm", f"t{i}"))
    refused = await client.put("/users/u1/devices/one-more", json={"provider": "fcm"})
    known = await client.put("/users/u1/devices/t7", json={"provider": "apns"})
    other_user = await client.put("/users/u2/devices/one-more", json={"provider": "fcm"})
    assert refused.status_code == 409
    assert str(MAX_DEVICES_PER_USER) in refused.json()["error"]
    assert known.status_code == 200
    assert other_user.status_code == 201
    devices = await registry.devices("u1")
    assert len(devices) == MAX_DEVICES_PER_USER
    assert Device("apns", "t7") in devices


class DownRegistry:
    """A registry whose store never answers."""

    async def _fail(self) -> NoReturn:
        await trio.lowlevel.checkpoint()
        raise BackendError("redis: ConnectionError: refused")

    async def put(self, user_id: str, device: Device) -> bool:
        await self._fail()

    async def devices(self, user_id: str) -> list[Device]:
        await self._fail()

    async def devices_many(self, user_ids: Sequence[str]) -> dict[str, list[Device]]:
        await self._fail()

    async def remove(self, user_id: str, token: str) -> bool:
        await self._fail()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/users/u1/devices/tok"),
        ("GET", "/users/u1/devices"),
        ("DELETE", "/users/u1/devices/tok"),
    ],
)
async def test_a_registry_that_fails_is_503(method: str, path: str) -> None:
    async with open_client(DownRegistry()) as client:
        response = await client.request(
            method, path, json={"provider": "fcm"} if method == "PUT" else None
        )
    assert response.status_code == 503
    assert response.json()["error"].startswith("device registry unavailable")
    assert "refused" in response.json()["error"]


async def test_the_service_serves_the_registry(served: Running) -> None:
    async with served.client() as client:
        put = await client.put("/users/u1/devices/tok", json={"provider": "firebase"})
        listed = await client.get("/users/u1/devices")
        deleted = await client.delete("/users/u1/devices/tok")
        after = await client.get("/users/u1/devices")
    assert put.status_code == 201
    assert listed.json()["devices"] == [{"provider": "firebase", "token": "tok"}]
    assert deleted.status_code == 204
    assert after.json()["devices"] == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/users/u1/devices/tok", 201),
        ("GET", "/users/u1/devices", 200),
        ("DELETE", "/users/u1/devices/tok", 204),
    ],
)
async def test_the_admin_token_guards_the_registry(
    secured: Running, method: str, path: str, status: int
) -> None:
    body = {"provider": "fcm"} if method == "PUT" else None
    async with secured.client() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == {"error": "missing or invalid admin token"}
        if method == "DELETE":  # something to delete
            ok = {"Authorization": f"Bearer {TOKEN}"}
            await client.put(path, json={"provider": "fcm"}, headers=ok)
        response = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == status, response.text
