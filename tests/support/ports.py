"""Ports for tests: one where nothing listens, and one for a server that cannot take 0.

``pushtrio serve`` needs neither: :class:`~tests.support.process.ServeProcess` starts
it on PORT=0 and reads the port it bound.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections until the block ends.

    The port is bound (so nobody else can take it) but never listens: a connection
    to it is refused at once, with no race against other processes.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


def free_port() -> int:
    """A loopback TCP port that was free a moment ago.

    Only for servers that cannot be started on port 0 and report the port they
    bound, or that must come back on the same port after a restart (a private
    ``redis-server`` or Kafka broker). Another process may take the port between
    this call and the server's bind; such a server fails to start visibly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
