"""A work-around for kafka-python 3.0.12: a read woken on a socket just closed.

kafka-python's I/O loop runs a transport's read task when its socket is readable.
When the same turn of the loop also closes that transport (a connection dropped in
a rebalance, an idle one reaped, the consumer closing), the read task may already
be queued: it wakes, finds ``_sock`` set to None and logs an ``AttributeError``
traceback at error level ("Error receiving network data closing socket"). Nothing
is lost (the transport is closed already and the error goes nowhere), but the
error line makes a clean rebalance look like a failure; one such line failed a
two-instance run. :func:`install` makes a read on a closed transport end quietly,
with the same connection error the read would have reported.
"""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaConnectionError
from kafka.net.transport import KafkaTCPTransport

_CLOSED = "transport closed"


def _closed_read_ends_quietly(original: Any) -> Any:
    def sock_recv(transport: Any) -> tuple[bytes, Exception | None]:
        if transport._sock is None:
            return b"", KafkaConnectionError(_CLOSED)
        result: tuple[bytes, Exception | None] = original(transport)
        return result

    sock_recv.closed_read_ends_quietly = True  # type: ignore[attr-defined]
    return sock_recv


def install() -> bool:
    """Wrap ``KafkaTCPTransport._sock_recv`` once; True if this call wrapped it.

    Harmless when the transport's layout differs (another kafka-python version):
    then it does nothing.
    """
    original = getattr(KafkaTCPTransport, "_sock_recv", None)
    if original is None or getattr(original, "closed_read_ends_quietly", False):
        return False
    KafkaTCPTransport._sock_recv = _closed_read_ends_quietly(original)
    return True
