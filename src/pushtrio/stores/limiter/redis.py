"""The Redis limiter: an exact sliding log per user, decided by one Lua script.

Each user has one sorted set, ``rate_limit:<user_id>``, whose members are the
message ids holding a slot and whose scores are the Redis server's time (in
microseconds) when each slot was taken. One script call decides one request
atomically: it drops entries strictly older than the window, allows a message id
already in the window again without a second slot, and otherwise adds the entry
if fewer than ``limit`` remain. "Now" is Redis's ``TIME``, so every pushtrio
process shares one clock (a wall clock: if it steps back, entries simply count a
little longer); each script touches one key, so Redis Cluster works.

The script replies with an integer: ``0`` when the request is allowed (a slot
taken, or its message id already holding one), else the wait in microseconds,
at least 1, until the window frees a slot. That is when the entry whose leaving
brings the set below ``limit`` (the oldest, unless the limit was lowered) turns
strictly older than the window: its score plus the window plus 1, minus now.

Many decisions travel in one non-transactional pipeline: one round trip and one
thread hop per :meth:`RedisLimiter.decide_many` (or ``acquire_many``) call.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import redis
import trio
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from ..redis_client import execute_many, raise_first_error, run_redis
from . import LimitStatus, check_window

KEY_PREFIX = "rate_limit:"

# Scores and bounds go through string.format('%d'): Lua's own number-to-string
# conversion keeps 14 digits, too few for microseconds since the epoch.
_ACQUIRE_LUA = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local member = ARGV[3]
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
-- An entry leaves the window once it is strictly older than the window.
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', now_us - window_us))
if redis.call('ZSCORE', key, member) then
  return 0
end
local used = redis.call('ZCARD', key)
if used < limit then
  redis.call('ZADD', key, string.format('%d', now_us), member)
  -- The newest entry is the last to leave; the key may go with it (+1 ms covers
  -- the instant when its age equals the window, when it still counts).
  redis.call('PEXPIRE', key, string.format('%d', math.ceil(window_us / 1000) + 1))
  return 0
end
-- Refused: once this entry has left, limit - 1 remain. Every score left is at
-- least now_us - window_us, so the wait is at least 1.
local freeing = redis.call('ZRANGE', key, used - limit, used - limit, 'WITHSCORES')
return tonumber(freeing[2]) + window_us + 1 - now_us
"""

# Read-only: counts without pruning, so a status probe never writes.
_STATUS_LUA = """
local key = KEYS[1]
local window_us = tonumber(ARGV[1])
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local min = string.format('%d', now_us - window_us)
local used = redis.call('ZCOUNT', key, min, '+inf')
if used == 0 then
  return {0, 0}
end
local oldest = redis.call('ZRANGEBYSCORE', key, min, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {used, tonumber(oldest[2]) + window_us - now_us}
"""

_ScriptCall = tuple[str, tuple[str | int, ...]]
"""One script call: its key and its arguments."""


def rate_limit_key(user_id: str) -> str:
    """The sorted set holding ``user_id``'s window."""
    return KEY_PREFIX + user_id


class RedisLimiter:
    """Per-user sliding-window limiter kept in Redis; exact within one Redis.

    ``client`` is shared and stays the caller's: :meth:`aclose` does not close it.
    Every method raises BackendError when Redis fails or does not answer within
    the client's socket timeouts. Cancellation takes effect once the round trip
    in flight ends; decisions Redis already made stand (a re-read message id is
    allowed again, so nothing is lost).
    """

    def __init__(self, client: redis.Redis, limit: int, window_s: float) -> None:
        check_window(limit, window_s)
        self.limit = limit
        self.window_s = window_s
        self._window_us = max(1, round(window_s * 1_000_000))
        self._client = client
        self._acquire_script = client.register_script(_ACQUIRE_LUA)
        self._status_script = client.register_script(_STATUS_LUA)

    async def acquire_many(self, requests: Sequence[tuple[str, str]]) -> list[bool]:
        """Decide ``(user_id, message_id)`` requests in order; True means allowed.

        All decisions go in one pipeline, one round trip. A message id already
        holding a slot in its user's window is allowed without a second slot.
        Raises BackendError if Redis fails; then some decisions may have been made
        and others not, and re-deciding the whole batch is safe (idempotent).
        The decisions of :meth:`decide_many`, without the waits.
        """
        return [wait == 0.0 for wait in await self.decide_many(requests)]

    async def decide_many(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Decide requests in order; 0.0 means allowed, else seconds until a slot frees.

        The wait (whole microseconds, at least one) is measured by Redis's clock
        when that request was decided. One pipeline, one round trip, and the
        same errors and idempotence as :meth:`acquire_many`.
        """
        if not requests:
            await trio.lowlevel.checkpoint()
            return []
        calls = [
            (rate_limit_key(user_id), (self.limit, self._window_us, message_id))
            for user_id, message_id in requests
        ]
        replies = await run_redis(partial(self._run_script, self._acquire_script, calls))
        return [int(wait_us) / 1_000_000 for wait_us in replies]

    async def status(self, user_id: str) -> LimitStatus:
        """Slots used and left in ``user_id``'s window now, by Redis's clock.

        ``reset_in_s`` is the time until the oldest entry leaves the window (0
        when the window is empty). Raises BackendError if Redis fails.
        """
        call = (rate_limit_key(user_id), (self._window_us,))
        [reply] = await run_redis(
            partial(self._run_script, self._status_script, [call]), abandon_on_cancel=True
        )
        used, reset_in_us = int(reply[0]), int(reply[1])
        return LimitStatus(
            user_id=user_id,
            limit=self.limit,
            window_s=self.window_s,
            used=used,
            remaining=max(0, self.limit - used),
            reset_in_s=max(0, reset_in_us) / 1_000_000,
        )

    async def reset(self, user_id: str) -> None:
        """Forget ``user_id``'s window (deletes its key). Raises BackendError."""
        await run_redis(partial(self._client.delete, rate_limit_key(user_id)))

    async def check(self) -> None:
        """PING Redis; raise BackendError unless it answers in time."""
        await run_redis(self._client.ping, abandon_on_cancel=True)

    async def aclose(self) -> None:
        """Nothing to release: the shared client belongs to whoever made it."""
        await trio.lowlevel.checkpoint()

    def _run_script(self, script: Script, calls: Sequence[_ScriptCall]) -> list[Any]:
        """Run ``script`` once per call in one pipeline (blocking; in a thread).

        Sends EVALSHA straight away rather than through ``Script.__call__``, whose
        pipeline support asks SCRIPT EXISTS first: a second round trip per batch.
        When Redis lacks the script (restart, SCRIPT FLUSH), the calls it refused
        had no effect, so they are re-run, in order, after loading it.
        """
        replies = self._pipeline(script.sha, calls)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            self._client.script_load(script.script)
            retried = self._pipeline(script.sha, [calls[i] for i in refused])
            for i, reply in zip(refused, retried, strict=True):
                replies[i] = reply
        raise_first_error(replies)
        return replies

    def _pipeline(self, sha: str, calls: Sequence[_ScriptCall]) -> list[Any]:
        return execute_many(self._client, [("EVALSHA", sha, 1, key, *args) for key, args in calls])


__all__ = ["KEY_PREFIX", "RedisLimiter", "rate_limit_key"]
