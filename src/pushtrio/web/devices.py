"""``/users/{user_id}/devices``: the device registry over HTTP (admin token when set).

- ``PUT /users/{user_id}/devices/{token}`` with ``{"provider": "fcm" | "apns" |
  "firebase"}`` registers a device (201 when new, 200 when it was known; a known token
  moves to the provider named); 409 past MAX_DEVICES_PER_USER.
- ``GET /users/{user_id}/devices`` lists them; ``DELETE .../{token}`` forgets one
  (204, or 404 when it was not registered).

400 ``{"error", "field"}`` for a malformed user id, token or body; 503 when the
registry's store (Redis) does not answer in time.
"""

from __future__ import annotations

from typing import Final

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio

from ..contract.errors import BackendError
from ..contract.notification import USER_ID_PATTERN
from ..stores.devices import (
    MAX_DEVICES_PER_USER,
    Device,
    DeviceRegistry,
    TooManyDevices,
    check_device,
)
from .bodies import read_json_body
from .responses import bad_user_id, json_error

REGISTRY_TIMEOUT_S: Final = 5.0


def _unavailable(exc: BaseException) -> Response:
    return json_error(503, f"device registry unavailable: {exc or 'timeout'}")


def add_device_routes(app: QuartTrio, registry: DeviceRegistry) -> None:
    """Register the device endpoints on ``app``."""

    @app.put("/users/<user_id>/devices/<token>")
    async def put_device(user_id: str, token: str) -> Response | tuple[Response, int]:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        document = await read_json_body()
        if isinstance(document, Response):
            return document
        if not isinstance(document, dict):
            return json_error(400, "the body must be a JSON object", field=None)
        unknown = sorted(set(document) - {"provider"})
        if unknown:
            message = f"unknown field {unknown[0]} (expected provider)"
            return json_error(400, message, field=unknown[0])
        provider = document.get("provider")
        if not isinstance(provider, str):
            return json_error(400, "provider is required", field="provider")
        try:
            check_device(token, provider)
        except ValueError as exc:
            field = "token" if str(exc).startswith("token") else "provider"
            return json_error(400, str(exc), field=field)
        device = Device(provider, token)
        try:
            with trio.fail_after(REGISTRY_TIMEOUT_S):
                new = await registry.put(user_id, device)
        except TooManyDevices:
            return json_error(409, f"user {user_id} has {MAX_DEVICES_PER_USER} devices already")
        except (BackendError, trio.TooSlowError) as exc:
            return _unavailable(exc)
        return jsonify({"user_id": user_id, **device.to_dict()}), 201 if new else 200

    @app.get("/users/<user_id>/devices")
    async def list_devices(user_id: str) -> Response:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(REGISTRY_TIMEOUT_S):
                devices = await registry.devices(user_id)
        except (BackendError, trio.TooSlowError) as exc:
            return _unavailable(exc)
        return jsonify({"user_id": user_id, "devices": [d.to_dict() for d in devices]})

    @app.delete("/users/<user_id>/devices/<token>")
    async def delete_device(user_id: str, token: str) -> Response | tuple[str, int]:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(REGISTRY_TIMEOUT_S):
                removed = await registry.remove(user_id, token)
        except (BackendError, trio.TooSlowError) as exc:
            return _unavailable(exc)
        if not removed:
            return json_error(404, f"user {user_id} has no device {token}")
        return "", 204
