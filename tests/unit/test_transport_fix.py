"""kafka-python's transport reading a socket the same loop turn closed (see transport_fix)."""

from __future__ import annotations

import logging
import socket

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.transport import KafkaTCPTransport

from pushtrio.source.kafka import clients, transport_fix


class _Net:
    """The part of kafka-python's NetworkSelector a transport's close uses."""

    def unregister_event(self, sock: object, events: int) -> None:
        pass

    def cancel(self, task: object) -> None:
        pass


def test_importing_the_clients_installs_the_fix_once() -> None:
    assert clients.CALL_TIMEOUT_MS > 0
    assert getattr(KafkaTCPTransport._sock_recv, "closed_read_ends_quietly", False)
    assert transport_fix.install() is False


def test_a_read_after_close_ends_with_a_connection_error_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left, right = socket.socketpair()
    right.close()
    transport = KafkaTCPTransport(_Net(), left)
    transport.abort()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="kafka.net.transport"):
        data, error = transport._sock_recv()
    assert data == b""
    assert isinstance(error, KafkaConnectionError)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_open_transport_still_reads() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    transport = KafkaTCPTransport(_Net(), left)
    right.sendall(b"hello")
    data, error = transport._sock_recv()
    assert (data, error) == (b"hello", None)
    right.close()
    left.close()
