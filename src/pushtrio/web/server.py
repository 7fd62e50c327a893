"""Serve the app with Hypercorn inside the service's nursery.

Why connections get a kernel send timeout: Hypercorn writes to a connection's
socket inside a *shielded* cancel scope with no time limit, holding that
connection's send lock, and closes the socket only once every task of the
connection has finished. A client that stops reading (a phone on a bad network,
a paused browser tab) shuts its TCP window; the write then waits for it forever,
and so do the task that asked for it (the feed handler), the connection's task
group, Hypercorn's ``graceful_timeout`` and any cancellation from above: a
shielded wait cannot be cancelled, and nothing closes the socket under it. The
process could not exit while such a client stayed connected.

So every accepted connection gets ``TCP_USER_TIMEOUT`` (set on the listening
socket, which accepted sockets inherit on Linux): data left unacknowledged, or
unsent behind a shut window, for :data:`~pushtrio.web.feed.FEED_SEND_TIMEOUT_S`
makes the kernel drop the connection. The blocked write then fails, Hypercorn
tears the connection down and the handler ends, within that time, whatever the
client does. Where the option does not exist (not Linux) a warning is logged at
start-up and a client that stops reading can still delay shutdown.
"""

from __future__ import annotations

import logging
import socket

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve

from . import AppHandles
from .app import create_app
from .feed import FEED_SEND_TIMEOUT_S

log = logging.getLogger(__name__)

GRACEFUL_TIMEOUT_S = 2.0
"""Time open requests and feeds get to finish once the server stops, before they are cancelled."""


def limit_stalled_sends(sock: socket.socket, timeout_s: float) -> bool:
    """Have the kernel drop connections of ``sock`` whose sent data stalls for ``timeout_s``.

    Set on a listening socket, it applies to every connection accepted from it.
    Returns False, leaving the socket as it was, where the platform has no
    ``TCP_USER_TIMEOUT`` or the socket is not TCP.
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, option, round(timeout_s * 1000))
    return True


class _StallLimitedConfig(Config):
    """Hypercorn's config, whose listening sockets get :func:`limit_stalled_sends`."""

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            if not limit_stalled_sends(sock, FEED_SEND_TIMEOUT_S):
                log.warning(
                    "no TCP_USER_TIMEOUT on %s: a client that stops reading can delay shutdown",
                    sock.getsockname(),
                )
        return sockets


async def serve_web(
    handles: AppHandles,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app on HOST:PORT until ``shutdown`` is set.

    Reports the bound addresses (``http://host:port``) once listening; with PORT=0
    the real port is in them. Raises OSError when the address cannot be bound.
    Once ``shutdown`` is set, open requests and feeds get GRACEFUL_TIMEOUT_S, then
    are cancelled; a connection whose client stopped reading is dropped within
    FEED_SEND_TIMEOUT_S of its last progress (see the module docstring). On
    cancellation the server stops at once, with the same bound on stalled writes.
    """
    options = handles.options
    config = _StallLimitedConfig()
    config.bind = [f"{options.host}:{options.port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    app = create_app(handles)
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
