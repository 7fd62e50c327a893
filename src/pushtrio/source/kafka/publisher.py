"""Writing records to Kafka: ``POST /send`` and the dead-letter topic.

kafka-python's KafkaProducer is thread-safe, so one producer is shared and each
call hops to a worker thread once for a whole list of records.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import trio
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from ...contract.errors import BrokerUnavailable
from ...contract.records import Message
from .clients import RECONNECT_BACKOFF_MAX_MS

PRODUCER_BATCH_BYTES = 256 * 1024
"""Largest record batch the producer builds (kafka-python's default is 16 KiB)."""


class KafkaPublisher:
    """Writes records with kafka-python's (thread-safe) KafkaProducer."""

    def __init__(self, brokers: Sequence[str], *, timeout_s: float = 10.0) -> None:
        self._brokers = list(brokers)
        self._timeout_s = timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get_producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._brokers,
                    client_id="pushtrio-publisher",
                    linger_ms=2,
                    # kafka-python builds record batches in Python: its 16 KiB default
                    # holds about 70 parked records (5 headers each), and each batch
                    # costs a request. 256 KiB halves the CPU per record (50 to 26 us,
                    # measured with delay-topic records) and the time to publish them.
                    batch_size=PRODUCER_BATCH_BYTES,
                    max_block_ms=int(self._timeout_s * 1000),
                    request_timeout_ms=int(self._timeout_s * 1000),
                    bootstrap_timeout_ms=int(self._timeout_s * 1000),
                    reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                )
            return self._producer

    def _publish_blocking(
        self, topic: str, items: Sequence[Message], partitions: Sequence[int] | None
    ) -> None:
        try:
            producer = self._get_producer()
            if partitions is None:
                futures = [producer.send(topic, value=v, key=k, headers=h) for k, v, h in items]
            else:
                count = len(producer.partitions_for(topic))
                futures = [
                    producer.send(topic, value=v, key=k, headers=h, partition=p % count)
                    for (k, v, h), p in zip(items, partitions, strict=True)
                ]
            # One wait for them all (a get per record waits on each record's event).
            producer.flush(timeout=self._timeout_s)
            for future in futures:
                if not future.is_done:
                    raise KafkaTimeoutError(f"no answer within {self._timeout_s:g}s")
                if future.failed():
                    raise future.exception
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka did not take the records: {exc}") from exc

    async def publish_many(
        self, topic: str, items: Sequence[Message], partitions: Sequence[int] | None = None
    ) -> None:
        """Write items and wait for the broker's acknowledgements (one thread hop).

        Raises BrokerUnavailable on any producer error or time-out. On cancellation
        the thread finishes on its own; the records may or may not be written.
        """
        if items:
            await trio.to_thread.run_sync(
                self._publish_blocking, topic, items, partitions, abandon_on_cancel=True
            )

    async def check(self) -> None:
        try:
            await trio.to_thread.run_sync(self._get_producer, abandon_on_cancel=True)
        except KafkaError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        producer = self._producer
        if producer is not None:
            await trio.to_thread.run_sync(lambda: producer.close(timeout=5))
