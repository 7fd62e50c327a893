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
from quart import Response
from quart_schema import validate_response
from quart_trio import QuartTrio

from ..contract.api import Device as DeviceView
from ..contract.api import DeviceRegistration, Devices
from ..contract.errors import BackendError
from ..contract.schema import USER_ID_PATTERN
from ..stores.devices import (
    MAX_DEVICES_PER_USER,
    Device,
    DeviceRegistry,
    TooManyDevices,
    check_device,
)
from .responses import bad_user_id, json_error
from .schema import answers, answers_raw, json_body

REGISTRY_TIMEOUT_S: Final = 5.0


def _unavailable(exc: BaseException) -> Response:
    return json_error(503, f"device registry unavailable: {exc or 'timeout'}")


def add_device_routes(app: QuartTrio, registry: DeviceRegistry) -> None:
    """Register the device endpoints on ``app``."""

    @app.put("/users/<user_id>/devices/<token>")
    @validate_response(DeviceView, 200)
    @validate_response(DeviceView, 201)
    @answers(400, "a malformed user_id, token or body; field names it")
    @answers(409, f"the user has {MAX_DEVICES_PER_USER} devices already")
    @answers(503, "the device registry (Redis) does not answer")
    @json_body(DeviceRegistration)
    async def put_device(
        user_id: str, token: str, data: DeviceRegistration
    ) -> tuple[DeviceView, int] | Response:
        """Register a device (201), or move a known token to this provider (200)"""
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            check_device(token, data.provider)
        except ValueError as exc:
            return json_error(400, str(exc), field="token")
        device = Device(data.provider, token)
        try:
            with trio.fail_after(REGISTRY_TIMEOUT_S):
                new = await registry.put(user_id, device)
        except TooManyDevices:
            return json_error(409, f"user {user_id} has {MAX_DEVICES_PER_USER} devices already")
        except (BackendError, trio.TooSlowError) as exc:
            return _unavailable(exc)
        view = DeviceView(data.provider, token, user_id=user_id)
        return view, 201 if new else 200

    @app.get("/users/<user_id>/devices")
    @validate_response(Devices)
    @answers(400, "a malformed user_id")
    @answers(503, "the device registry (Redis) does not answer")
    async def list_devices(user_id: str) -> Devices | Response:
        """A user's registered devices (none: an empty list)"""
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(REGISTRY_TIMEOUT_S):
                devices = await registry.devices(user_id)
        except (BackendError, trio.TooSlowError) as exc:
            return _unavailable(exc)
        return Devices(user_id, [DeviceView(d.provider, d.token) for d in devices])  # type: ignore[arg-type]

    @app.delete("/users/<user_id>/devices/<token>")
    @answers_raw(204, "forgotten")
    @answers(400, "a malformed user_id")
    @answers(404, "the user has no such device")
    @answers(503, "the device registry (Redis) does not answer")
    async def delete_device(user_id: str, token: str) -> Response | tuple[str, int]:
        """Forget a device"""
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
