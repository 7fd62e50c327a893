"""How pushtrio configures kafka-python's clients, and why.

One place for the settings that decide how fast the service notices and survives
what brokers do: sessions, reconnects after a restart, metadata refreshes (new
partitions) and topic creation. The reader thread (:mod:`.kafka`), the publisher
(:mod:`.publisher`) and the dead-letter replay build their clients from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

from . import transport_fix
from .assignor import TopicBalancedAssignor

SESSION_TIMEOUT_MS = 10_000
CALL_TIMEOUT_MS = 10_000
"""Limit on one blocking call of the reader thread (commit, committed offsets)."""
RECONNECT_BACKOFF_MAX_MS = 1000
"""Cap on kafka-python's reconnect back-off (its default grows to 30 s after a broker
restart, leaving the clients idle long after the broker answers again)."""
FETCH_MAX_WAIT_MS = 100
"""Longest the broker holds a fetch that found nothing new (kafka-python's default is
500 ms)."""
METADATA_MAX_AGE_MS = 10_000
"""How often the cluster metadata is refreshed: new partitions of the topic are
picked up within this time (kafka-python's default is 5 minutes)."""

transport_fix.install()  # every client pushtrio builds comes through this module


def _consumer(brokers: Sequence[str], **settings: Any) -> Any:
    """A KafkaConsumer with the settings every pushtrio consumer shares, plus ``settings``."""
    return KafkaConsumer(
        bootstrap_servers=list(brokers),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=CALL_TIMEOUT_MS * 3,
        bootstrap_timeout_ms=CALL_TIMEOUT_MS,
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
        allow_auto_create_topics=False,
        **settings,
    )


def new_consumer(brokers: Sequence[str], group: str, *, max_poll_records: int) -> Any:
    """A KafkaConsumer for ``group`` with manual commits; raises KafkaError if unreachable.

    Cooperative assignment moves only the partitions that must move, balanced per
    topic (:mod:`.assignor`: the topic and each delay topic are shared out on their
    own); kafka-python's cooperative-sticky assignor stays listed second, so members
    of an older version still agree on one. The consumer never creates the topic it
    subscribes to (a deleted topic must show as missing, not come back empty), though
    kafka-python 3.0 may still ask the broker to; see README.
    """
    return _consumer(
        brokers,
        group_id=group,
        client_id=f"pushtrio-{group}",
        max_poll_records=max_poll_records,
        partition_assignment_strategy=(TopicBalancedAssignor, CooperativeStickyAssignor),
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=SESSION_TIMEOUT_MS // 4,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


def new_reader(brokers: Sequence[str], client_id: str, *, max_poll_records: int) -> Any:
    """A KafkaConsumer outside any group (it assigns partitions itself, never commits);
    raises KafkaError if unreachable."""
    return _consumer(brokers, group_id=None, client_id=client_id, max_poll_records=max_poll_records)
