"""Shared fixtures.

Integration tests need the real Redis and Kafka that ``scripts/services.sh start``
runs on loopback; ``scripts/test.sh`` exports their addresses as
PUSHTRIO_TEST_REDIS and PUSHTRIO_TEST_KAFKA. Without them those tests are skipped,
unless PUSHTRIO_REQUIRE_SERVICES is set (the test command sets it), where a missing
service is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .support.requirements import unavailable


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text,
    # deprecated on Python 3.11/3.12 (undeprecated in 3.13): every `import kafka`
    # warns, which filterwarnings = "error" would turn into a failure. Added here,
    # after the ini's own filters, so it takes precedence over "error".
    config.addinivalue_line(
        "filterwarnings", "ignore:(read|open)_text is deprecated:DeprecationWarning"
    )


def _service(variable: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        unavailable(f"{variable} not set (run scripts/test.sh, or start scripts/services.sh)")
    return value


@pytest.fixture
def redis_addr() -> str:
    """host:port of the real test Redis; its database 0 is flushed before each test."""
    import redis

    addr = _service("PUSHTRIO_TEST_REDIS")
    host, port = addr.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=5)
    client.flushdb()
    client.close()
    return addr


@pytest.fixture
def redis_client(redis_addr: str) -> Iterator[Any]:
    """A pushtrio-configured redis-py client for the test Redis (closed afterwards)."""
    from pushtrio.stores.redis_client import connect

    client = connect(redis_addr)
    yield client
    client.close()


@pytest.fixture
def kafka_bootstrap() -> str:
    """host:port of the real test Kafka broker."""
    return _service("PUSHTRIO_TEST_KAFKA")


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=1)`` creates a fresh, uniquely named topic."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="pushtrio-tests")
    created: list[str] = []

    def create(partitions: int = 1, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield create
    admin.close()
    if created:
        from .support.kafka import delete_topics

        delete_topics(kafka_bootstrap, created)  # with the delay topics made beside them
