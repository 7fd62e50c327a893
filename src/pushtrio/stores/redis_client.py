"""The shared Redis client and the one way trio code calls it.

redis-py's sync client is thread-safe (its connection pool hands each thread its
own connection), so one client serves every backend. Trio code never calls it
directly: :func:`run_redis` runs a blocking function in a worker thread, one hop
per batch, and translates redis-py's errors into :class:`~pushtrio.contract.errors.BackendError`.

Every call is bounded by the socket timeouts set in :func:`connect`, so a Redis
that stops answering turns into a BackendError instead of a hung worker: at once
when the connection is refused, and after at most about four socket timeouts
(redis-py retries the connection inside its one retry of the command) when the
server accepts connections but never answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import hiredis
import redis
import redis.exceptions
import trio
from redis._parsers import BaseParser
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ..contract.errors import BackendError, BackendMisconfigured

T = TypeVar("T")

SOCKET_TIMEOUT_S = 2.0
"""Limit on connecting to Redis and on each read or write of a reply."""

HEALTH_CHECK_INTERVAL_S = 30
"""A pooled connection idle for longer than this is PINGed before it is reused."""

_ADDR = re.compile(r"\[?(?P<host>[^\[\]]+)\]?:(?P<port>\d{1,5})")


def parse_addr(addr: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6-host]:port``) into its parts.

    Raises ValueError when ``addr`` has another shape (``memory://`` included).
    """
    match = _ADDR.fullmatch(addr.strip())
    if match is None:
        raise ValueError(f"expected host:port, got {addr!r}")
    return match["host"], int(match["port"])


def connect(
    addr: str, *, password: str = "", db: int = 0, timeout_s: float = SOCKET_TIMEOUT_S
) -> redis.Redis:
    """Build the sync client for Redis at ``addr`` (``host:port``), shared across threads.

    No I/O happens here: connections are opened lazily by the first command, so
    an unreachable Redis shows up as BackendError from the first backend call (or
    from ``check()``). Raises ValueError when ``addr`` is the embedded mode
    (``memory://``) or malformed. An empty ``password`` sends none.
    """
    host, port = parse_addr(addr)
    return redis.Redis(
        host=host,
        port=port,
        db=db,
        password=password or None,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        decode_responses=False,
        # redis-py's default retries ten times with backoff, which turns an outage
        # into half a minute of silence per call. One quick retry absorbs a stale
        # pooled connection; re-running a batch is safe because every command the
        # backends send is idempotent (SET, EXISTS, and the limiter script keyed by
        # message id).
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=1),
        client_name="pushtrio",
    )


@asynccontextmanager
async def open_redis(addr: str, *, password: str = "", db: int = 0) -> AsyncIterator[redis.Redis]:
    """Yield :func:`connect`'s client and close its connections on exit.

    Closing is local (it only drops pooled sockets), so it is quick and safe to run
    even when the block is cancelled. Raises what :func:`connect` raises.
    """
    client = connect(addr, password=password, db=db)
    try:
        yield client
    finally:
        client.close()


def pack_commands(commands: Sequence[Sequence[bytes | str | int]]) -> bytes:
    """The RESP encoding of ``commands``, all in one buffer (hiredis packs each in C)."""
    # hiredis types its argument as a 1-tuple; any length is packed.
    return b"".join([hiredis.pack_command(tuple(command)) for command in commands])  # type: ignore[arg-type]


def execute_many(client: redis.Redis, commands: Sequence[Sequence[bytes | str | int]]) -> list[Any]:
    """Send ``commands`` in one write and read every reply (blocking; run it in a thread).

    A lean pipeline for the hot path: redis-py's own pipeline, and even its
    ``read_response`` per reply, spend more time in Python than Redis spends running
    the commands. Here hiredis packs the commands and one hiredis reader parses
    every reply of the round trip from the connection's socket. Error replies come
    back as redis-py's exception objects in their place; a broken connection is
    retried once on a fresh one (every command sent this way is idempotent) and
    then raised.
    """
    payload = [pack_commands(commands)]
    pool = client.connection_pool
    for attempt in (1, 2):
        connection = pool.get_connection()
        try:
            connection.send_packed_command(payload)  # type: ignore[no-untyped-call]
            return _read_replies(connection, len(commands))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            connection.disconnect()  # type: ignore[no-untyped-call]
            if attempt == 2:
                raise redis.ConnectionError(str(exc)) from exc
        finally:
            pool.release(connection)
    raise AssertionError("unreachable")


def _read_replies(connection: Any, count: int) -> list[Any]:
    """``count`` replies from the socket ``send_packed_command`` wrote to.

    Reads the socket redis-py opened (``_sock``: redis-py 5-8 keep it there) with a
    hiredis reader of its own, so that nothing is left in redis-py's parser; the
    socket's timeout (SOCKET_TIMEOUT_S) bounds every read.
    """
    sock = connection._sock
    reader = hiredis.Reader()
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is False:
            try:
                data = sock.recv(_READ_SIZE)
            except TimeoutError as exc:
                raise redis.TimeoutError("Timeout reading from Redis") from exc
            if not data:
                raise redis.ConnectionError("Redis closed the connection")
            reader.feed(data)
        elif isinstance(reply, hiredis.ReplyError):
            replies.append(BaseParser.parse_error(str(reply)))  # type: ignore[no-untyped-call]
        else:
            replies.append(reply)
    return replies


_READ_SIZE = 256 * 1024


def raise_first_error(replies: list[Any]) -> None:
    """Raise the first error reply of :func:`execute_many`, if any."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def run_redis(call: Callable[[], T], *, abandon_on_cancel: bool = False) -> T:
    """Run the blocking ``call`` in a worker thread and return its result.

    Any ``redis.RedisError`` it raises becomes BackendError (raised ``from`` it).
    Cancellation is honoured once the round trip in flight ends: the thread is not
    abandoned, so a batch is never half-reported, and the wait is bounded by the
    client's socket timeouts. Read-only probes (PING, status) pass
    ``abandon_on_cancel=True`` so that a caller's deadline takes effect at once.
    """
    try:
        return await trio.to_thread.run_sync(call, abandon_on_cancel=abandon_on_cancel)
    except redis.RedisError as exc:
        message = f"redis: {type(exc).__name__}: {exc}"
        if is_misconfiguration(exc):
            raise BackendMisconfigured(message) from exc
        raise BackendError(message) from exc


_MISCONFIGURED_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM", "WRONGTYPE", "DB index is out of range")


def is_misconfiguration(exc: redis.RedisError) -> bool:
    """Whether Redis refused us for who we are or what a key holds, not for an outage.

    A wrong or missing password, a missing permission, a database index the server
    does not have, a key of another type: retrying the same call cannot succeed.
    """
    if isinstance(
        exc,
        redis.exceptions.AuthenticationError
        | redis.exceptions.AuthorizationError
        | redis.exceptions.NoPermissionError,
    ):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_MISCONFIGURED_REPLIES)


__all__ = [
    "HEALTH_CHECK_INTERVAL_S",
    "SOCKET_TIMEOUT_S",
    "connect",
    "execute_many",
    "is_misconfiguration",
    "open_redis",
    "pack_commands",
    "parse_addr",
    "raise_first_error",
    "run_redis",
]
