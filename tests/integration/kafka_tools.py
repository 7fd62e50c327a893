"""Blocking helpers for integration tests: produce, read back, compare committed offsets.

Call them through ``trio.to_thread.run_sync`` from async tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush(timeout=60)
    producer.close(timeout=10)
    return n


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        admin.close()


def committed_when_loaded(bootstrap: str, group: str, timeout_s: float = 30) -> dict[int, int]:
    """The group's committed offsets, once the coordinator has loaded them.

    Just after a broker (re)starts, the coordinator answers CoordinatorLoadInProgress
    for a while: such retriable errors are waited out, up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return committed_offsets(bootstrap, group)
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def group_members(bootstrap: str, group: str) -> tuple[str, dict[str, list[int]]]:
    """The group's state and, for each member id, the partitions assigned to it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        description = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = {
        member["member_id"]: sorted(
            p
            for topic in (member["member_assignment"] or {}).get("assigned_partitions", [])
            for p in topic["partitions"]
        )
        for member in description["members"]
    }
    return description["group_state"], members


def wait_committed(bootstrap: str, group: str, topic: str, timeout_s: float) -> dict[int, int]:
    """Poll until the group's committed offsets equal the end offsets; return them."""
    deadline = time.monotonic() + timeout_s
    ends = end_offsets(bootstrap, topic)
    committed: dict[int, int] = {}
    while time.monotonic() < deadline:
        committed = committed_when_loaded(bootstrap, group, max(0.0, deadline - time.monotonic()))
        if committed == ends:
            return committed
        time.sleep(0.2)
    raise AssertionError(f"committed {committed} never reached end offsets {ends}")


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Read ``expected`` records of ``topic`` from the beginning (fails if fewer arrive)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # One more short poll: more than expected would be a bug too.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


def notification(message_id: str, user_id: str, **extra: object) -> tuple[bytes, bytes]:
    document = {"id": message_id, "user_id": user_id, "title": "hello", "body": "world", **extra}
    return user_id.encode(), orjson.dumps(document)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class ServeProcess:
    """``python -m pushtrio serve`` as a child process, the way users run it."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pushtrio", "serve"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b" ready on " in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"serve did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()
