"""The service and its ``/openapi.json`` agree: schemathesis checks one against the other.

For every operation schemathesis sends requests the document says are valid and
requests it says are not, and checks each answer: a documented status, its
content type and schema, no 5xx, invalid input refused, valid input accepted and,
with ADMIN_TOKEN, no answer without the token. It runs with and without the token,
since the document differs (bearer security is declared only when a token is set).

Schemathesis and requests are synchronous, so the service runs in a thread of its
own, under its own trio loop. Hypothesis is derandomized (the same examples every
run) and keeps no example database, so the run is repeatable.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from .conftest import TOKEN, openapi_document, web_settings

MAX_EXAMPLES = 25
"""Generated requests per operation and phase; the module's tests take about 25 s."""

# OpenAPI cannot describe a WebSocket handshake, so every request schemathesis can
# build for the feed is a plain GET, which is refused with 400 as documented.
CONFIG: dict[str, Any] = {
    "operations": [
        {"include-path": "/ws/events", "checks": {"positive_data_acceptance": {"enabled": False}}}
    ],
}


@contextmanager
def service_thread(**changes: Any) -> Iterator[str]:
    """Serve a Service (:func:`web_settings` plus ``changes``) in a thread; yield its URL."""
    from pushtrio.service import Service

    service = Service(web_settings(**changes))
    ready: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )

    async def serve() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            addresses: list[str] = await nursery.start(service.serve, stop)
            ready.put((addresses[0], trio.lowlevel.current_trio_token(), stop))

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=run, name="pushtrio-service", daemon=True)
    thread.start()
    started = ready.get(timeout=60)
    if isinstance(started, BaseException):
        raise started
    url, token, stop = started
    try:
        yield url
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the service did not stop"
        if not ready.empty():
            raise ready.get_nowait()  # type: ignore[misc]


@pytest.fixture(scope="module")
def open_url() -> Iterator[str]:
    with service_thread() as url:
        yield url


@pytest.fixture(scope="module")
def secured_url() -> Iterator[str]:
    with service_thread(admin_token=TOKEN) as url:
        yield url


def load(*, secured: bool) -> Any:
    """The document as the service serves it (test_openapi.py checks they are equal)."""
    config = dict(CONFIG)
    if secured:
        config["auth"] = {"openapi": {"bearer": {"bearer": TOKEN}}}
    return schemathesis.openapi.from_dict(
        openapi_document(secured=secured), config=SchemathesisConfig.from_dict(config)
    )


hypothesis_settings = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, timeout=10)


@load(secured=False).parametrize()
@hypothesis_settings
def test_the_service_keeps_to_its_document(case: Any, open_url: str) -> None:
    check(case, open_url)


@load(secured=True).parametrize()
@hypothesis_settings
def test_the_service_keeps_to_its_document_with_a_token(case: Any, secured_url: str) -> None:
    check(case, secured_url)
