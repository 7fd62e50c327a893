"""``pushtrio watch``: follow the live outcome feed from a terminal.

A trio-websocket client of ``WS /ws/events``: one readable line per outcome (or
the raw JSON with ``--json``), a summary of the counts on exit, whether the
feed ended, ``--count`` was reached, or the user pressed Ctrl-C (or sent SIGTERM).
A watch ended by a signal closes the feed, prints its summary and exits with the
shell's status for that signal: 130 for SIGINT, 143 for SIGTERM.
The admin token travels in the ``Authorization`` header, never in the URL.
"""

from __future__ import annotations

import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from ..contract.errors import PushtrioError

FEED_PATH: Final = "/ws/events"
CONNECT_TIMEOUT_S: Final = 10.0
"""Limit on connecting, and then on the WebSocket handshake."""
CLOSE_TIMEOUT_S: Final = 0.5
"""Limit on the closing handshake. When the watch is cancelled (a signal) the reader
task that would see the server's reply is gone, so this is also how long such an
exit waits; the socket is closed either way."""
STOP_REASONS: Final[dict[int, str]] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
"""The signals that end a watch cleanly, and how the summary names each."""


class WatchError(PushtrioError):
    """The feed could not be opened (refused, unreachable, bad URL)."""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    url: str
    user_id: str = ""
    events: str = ""
    token: str = ""
    count: int = 0
    """Stop after this many outcomes (0: until the feed ends or Ctrl-C)."""
    raw_json: bool = False


@dataclass(slots=True)
class Tally:
    """What was seen so far; filled while watching, read for the summary."""

    counts: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    started: float = field(default_factory=time.monotonic)
    close_reason: str = ""
    stop_signal: int = 0
    """The signal that ended the watch, 0 when none did."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_status(self) -> int:
        """128 plus the signal that ended the watch (130 for Ctrl-C, 143 for SIGTERM), else 0."""
        return 128 + self.stop_signal if self.stop_signal else 0

    def stopped_by(self, signum: int) -> None:
        """Record that ``signum`` ends the watch; a later signal changes nothing."""
        if not self.stop_signal:
            self.stop_signal = signum
            self.close_reason = STOP_REASONS.get(signum, signal.Signals(signum).name)

    def add(self, event: dict[str, Any]) -> None:
        if event.get("event") == "dropped":
            self.dropped += int(event.get("count", 0))
        else:
            self.counts[str(event.get("event"))] += 1

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.counts.items())) or "none"
        plural = "" if self.total == 1 else "s"
        line = f"{self.total} outcome{plural} in {elapsed:.1f}s: {kinds}"
        if self.dropped:
            line += f"; {self.dropped} dropped (watch fell behind)"
        if self.close_reason:
            line += f"; {self.close_reason}"
        return line


def feed_url(base: str, user_id: str = "", events: str = "") -> str:
    """The feed URL: ``base`` (``ws://host:port`` or a full feed URL) plus the filters.

    ``http(s)://`` is accepted and turned into ``ws(s)://``. Raises WatchError for
    another scheme.
    """
    parts = urlsplit(base.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise WatchError(f"expected a ws:// or http:// URL, got {base!r}")
    path = parts.path if parts.path not in ("", "/") else FEED_PATH
    query = [(name, value) for name, value in (("user_id", user_id), ("event", events)) if value]
    query.append(("batch", "1"))  # frames of every event waiting: keeps up with a burst
    extra = urlencode(query)
    joined = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((scheme, parts.netloc, path, joined, ""))


def format_event(event: dict[str, Any]) -> str:
    """One readable line for a feed frame."""
    ts = event.get("ts")
    moment = datetime.fromtimestamp(ts) if isinstance(ts, int | float) and ts else datetime.now()
    stamp = moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    kind = str(event.get("event", "?"))
    if kind == "dropped":
        return (
            f"{stamp}  {'dropped':<12}  {event.get('count')} older events lost (watch fell behind)"
        )
    if kind == "breaker":
        return f"{stamp}  {kind:<12}  provider {event.get('provider')}: {event.get('state')}"
    if kind == "token_pruned":
        return (
            f"{stamp}  {kind:<12}  user={event.get('user_id')}  {event.get('provider')}"
            f"  token {event.get('token')}"
        )
    due = event.get("due")
    if isinstance(due, int | float):  # a step: waiting in a delay topic
        at = datetime.fromtimestamp(due).strftime("%H:%M:%S")
        line = (
            f"{stamp}  {kind:<12}  {event.get('id')}  user={event.get('user_id')}"
            f"  {event.get('provider') or '-'}  attempts={event.get('attempts')}  due {at}"
        )
        return line + (f"  reason={event['reason']}" if event.get("reason") else "")
    line = (
        f"{stamp}  {kind:<12}  {event.get('id')}  user={event.get('user_id')}"
        f"  {event.get('provider') or '-'}  p{event.get('priority')}"
        f"  attempts={event.get('attempts')}  {event.get('latency_ms')}ms"
    )
    if event.get("error"):
        line += f"  error={event['error']}"
    return line


def _ignore(_: str) -> None:
    pass


async def run_watch(
    options: WatchOptions,
    tally: Tally,
    emit: Callable[[str], None] = print,
    notice: Callable[[str], None] = _ignore,
) -> None:
    """Print the feed until it closes or ``options.count`` outcomes were seen.

    ``emit`` gets one line per frame; ``notice`` gets a status line once the feed
    is open. Counts go into ``tally`` as they arrive, so a caller interrupted by
    Ctrl-C can still print the summary. Raises WatchError when the feed cannot be
    opened; a feed closed by the server ends normally (the reason is kept in the
    tally). On cancellation (or KeyboardInterrupt) the connection is closed.
    """
    url = feed_url(options.url, options.user_id, options.events)
    parts = urlsplit(url)
    resource = f"{parts.path}?{parts.query}" if parts.query else parts.path
    headers = [(b"authorization", f"Bearer {options.token}".encode())] if options.token else []
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await _connect(parts.scheme == "wss", parts.hostname or "", parts.port)
    except (OSError, trio.TooSlowError) as exc:
        raise WatchError(f"cannot connect to {url}: {exc or 'timed out'}") from exc
    # The stream is ours to close: trio-websocket leaves a client's socket open
    # when the server ends the connection.
    async with stream:
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    ws = await wrap_client_stream(
                        nursery, stream, parts.netloc, resource, extra_headers=headers
                    )
                notice(f"watching {url} (Ctrl-C to stop)")
                try:
                    await _follow(ws, options, tally, emit)
                finally:
                    with trio.move_on_after(CLOSE_TIMEOUT_S) as cleanup:
                        cleanup.shield = True
                        await ws.aclose()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _translate(url, group) from None


async def run_watch_until_signalled(
    options: WatchOptions,
    tally: Tally,
    emit: Callable[[str], None] = print,
    notice: Callable[[str], None] = _ignore,
) -> None:
    """:func:`run_watch`, also ending cleanly on SIGINT and SIGTERM.

    A signal cancels the watch (the feed is closed within :data:`CLOSE_TIMEOUT_S`)
    and is recorded with :meth:`Tally.stopped_by`, so the caller prints the
    summary and exits with ``tally.exit_status``. SIGINT is received here rather
    than raised as KeyboardInterrupt, so it never lands in the middle of the
    WebSocket library's own code. Errors come out of a nursery, so in exception
    groups (WatchError included).
    """
    with trio.open_signal_receiver(*STOP_REASONS) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    tally.stopped_by(signum)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await run_watch(options, tally, emit, notice)
            nursery.cancel_scope.cancel()


async def _connect(
    secure: bool, host: str, port: int | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    if secure:
        context = ssl.create_default_context()
        return await trio.open_ssl_over_tcp_stream(
            host, port or 443, ssl_context=context, https_compatible=True
        )
    return await trio.open_tcp_stream(host, port or 80)


async def _follow(
    ws: WebSocketConnection, options: WatchOptions, tally: Tally, emit: Callable[[str], None]
) -> None:
    while not options.count or tally.total < options.count:
        try:
            message = await ws.get_message()
        except ConnectionClosed as exc:
            tally.close_reason = _closed(exc)
            return
        document = orjson.loads(message)
        for event in document if isinstance(document, list) else [document]:
            tally.add(event)
            emit(orjson.dumps(event).decode() if options.raw_json else format_event(event))
            if options.count and tally.total >= options.count:
                return


def _translate(url: str, group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error behind ``group`` (as WatchError when the feed could not open)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        elif not isinstance(error, trio.Cancelled):
            leaves.append(error)
    if len(leaves) != 1:
        return group
    error = leaves[0]
    if isinstance(error, ConnectionRejected):
        return WatchError(f"{url} refused the feed: {error.status_code} {_body(error.body)}")
    if isinstance(error, trio.TooSlowError | HandshakeError | trio.BrokenResourceError):
        return WatchError(f"{url} did not complete the WebSocket handshake: {error!r}")
    return error


def _closed(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "feed closed"
    return f"feed closed by the server: {reason.code} {reason.reason or reason.name}".strip()


def _body(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()
    if isinstance(document, dict) and "error" in document:
        return str(document["error"])
    return body.decode(errors="replace").strip()
