"""The device registry: which phones (provider, token) each user has.

A notification names a user; real providers deliver to device tokens. The registry
keeps, per user, a Redis hash ``devices:<user_id>`` of token -> provider (one key
per user, so Redis Cluster works), or the same in memory on the embedded backends.
``PUT``/``GET``/``DELETE /users/{user_id}/devices/...`` write and read it; the
delivery (:mod:`pushtrio.providers.fanout`) reads it once per batch and removes the
tokens a provider calls dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import trio

from ..contract.notification import PROVIDERS
from ..contract.schema import MAX_TOKEN_CHARS, TOKEN_PATTERN
from .redis_client import execute_many, raise_first_error, run_redis

MAX_DEVICES_PER_USER = 100
"""More devices for one user is refused (409): a runaway client, not a person."""


@dataclass(frozen=True, slots=True, order=True)
class Device:
    provider: str
    token: str

    def to_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "token": self.token}


class TooManyDevices(Exception):
    """The user already has MAX_DEVICES_PER_USER devices."""


def check_device(token: str, provider: str) -> None:
    """Raise ValueError naming what is wrong with a device to register."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError(f"token must be 1-{MAX_TOKEN_CHARS} letters, digits or _.:-")
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")


class DeviceRegistry(Protocol):
    """Every method raises BackendError when the store fails (Redis down)."""

    async def put(self, user_id: str, device: Device) -> bool:
        """Register (or move to another provider) a device; True if it is new.
        Raises TooManyDevices when the user is at MAX_DEVICES_PER_USER."""
        ...

    async def devices(self, user_id: str) -> list[Device]: ...

    async def devices_many(self, user_ids: Sequence[str]) -> dict[str, list[Device]]:
        """The devices of each user, in one round trip."""
        ...

    async def remove(self, user_id: str, token: str) -> bool:
        """Forget a device; True if it was registered."""
        ...


class MemoryDevices:
    """The registry in this process's memory (embedded backends)."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, str]] = {}

    async def put(self, user_id: str, device: Device) -> bool:
        await trio.lowlevel.checkpoint()
        tokens = self._users.setdefault(user_id, {})
        if device.token not in tokens and len(tokens) >= MAX_DEVICES_PER_USER:
            raise TooManyDevices(user_id)
        new = device.token not in tokens
        tokens[device.token] = device.provider
        return new

    async def devices(self, user_id: str) -> list[Device]:
        return (await self.devices_many([user_id]))[user_id]

    async def devices_many(self, user_ids: Sequence[str]) -> dict[str, list[Device]]:
        await trio.lowlevel.checkpoint()
        return {
            user: sorted(Device(p, t) for t, p in self._users.get(user, {}).items())
            for user in user_ids
        }

    async def remove(self, user_id: str, token: str) -> bool:
        await trio.lowlevel.checkpoint()
        tokens = self._users.get(user_id, {})
        found = tokens.pop(token, None) is not None
        if not tokens:
            self._users.pop(user_id, None)
        return found


_PUT_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
"""


def devices_key(user_id: str) -> str:
    return f"devices:{user_id}"


class RedisDevices:
    """The registry in Redis: a hash ``devices:<user_id>`` of token -> provider.

    ``client`` is shared and stays the caller's.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def _run(self, commands: list[tuple[str, ...]]) -> list[Any]:
        def call() -> list[Any]:
            replies = execute_many(self._client, commands)
            raise_first_error(replies)
            return replies

        return await run_redis(call)

    async def put(self, user_id: str, device: Device) -> bool:
        # One script: the limit check and the write are atomic (two PUTs at the limit
        # cannot both pass), in one round trip.
        [added] = await self._run(
            [
                (
                    "EVAL",
                    _PUT_SCRIPT,
                    "1",
                    devices_key(user_id),
                    device.token,
                    device.provider,
                    str(MAX_DEVICES_PER_USER),
                )
            ]
        )
        if int(added) < 0:
            raise TooManyDevices(user_id)
        return bool(added)

    async def devices(self, user_id: str) -> list[Device]:
        return (await self.devices_many([user_id]))[user_id]

    async def devices_many(self, user_ids: Sequence[str]) -> dict[str, list[Device]]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            await trio.lowlevel.checkpoint()
            return {}
        replies = await self._run([("HGETALL", devices_key(u)) for u in users])
        return {user: _devices(reply) for user, reply in zip(users, replies, strict=True)}

    async def remove(self, user_id: str, token: str) -> bool:
        [removed] = await self._run([("HDEL", devices_key(user_id), token)])
        return bool(removed)


def _devices(reply: object) -> list[Device]:
    """HGETALL's reply (a flat list or a dict, as the client decodes it) as devices."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    elif isinstance(reply, list):
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    else:
        return []
    return sorted(Device(_text(p), _text(t)) for t, p in pairs)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
