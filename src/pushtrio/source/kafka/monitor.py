"""The group monitor: what the consumer group has not committed, seen from outside.

The reader thread knows only the partitions assigned to it, and only while it is
not stuck. The monitor asks the brokers directly, with an admin client of its own
in a worker thread, every ``interval_s``: the topic's partitions, their end
offsets, and the group's committed offsets. From these it gives

- ``lag``: records of the whole topic the group has not committed (also on
  partitions nobody owns yet, and while a partition or the reader is stuck);
- whether the topic exists (and its delay topics: the monitor creates them, with
  the topic's partition count, before it says so);
- per partition, since when its committed offset has not moved while records wait
  (:meth:`GroupMonitor.stalled`), which ``/health`` reports as a stall.

A failed round keeps the last figures and records the error; the next round tries
again with a fresh client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.errors import KafkaError

from .clients import RECONNECT_BACKOFF_MAX_MS
from .errors import describe
from .topics import ensure_topics, stray_tiers

log = logging.getLogger(__name__)

CALL_TIMEOUT_MS = 5_000


@dataclass(slots=True)
class _Partition:
    end: int = 0
    committed: int = 0
    moved_at: float = field(default_factory=time.monotonic)
    """When ``committed`` last changed, or when records last stopped waiting."""


@dataclass(frozen=True, slots=True)
class _Round:
    partitions: dict[int, tuple[int, int]]
    """partition -> (end offset, committed offset or the earliest offset when none)."""
    topic_exists: bool


class GroupMonitor:
    """Lag, topic existence and stalls of ``group`` on ``topic``; run :meth:`serve`."""

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str,
        group: str,
        *,
        interval_s: float = 2.0,
        delay_topics: Sequence[str] = (),
    ) -> None:
        self._brokers = list(brokers)
        self._topic = topic
        self._delay_topics = tuple(delay_topics)
        self._delay_topics_ready = not self._delay_topics
        self._group = group
        self._interval_s = interval_s
        self._admin: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._busy = False  # a round is running in a worker thread
        self._partitions: dict[int, _Partition] = {}
        self.topic_exists = True
        self._seen_topic = False
        self.error = ""
        self.updated_at: float | None = None

    async def serve(self) -> None:
        """Measure every ``interval_s`` until cancelled (the thread in flight is abandoned)."""
        try:
            while True:
                try:
                    result = await trio.to_thread.run_sync(self._measure, abandon_on_cancel=True)
                except KafkaError as exc:
                    self._set_error(describe(exc))
                    self._drop_admin()
                else:
                    self._apply(result)
                await trio.sleep(self._interval_s)
        finally:
            # A round still running in its (abandoned) thread closes the client
            # itself when it ends; one that has not started will not open one.
            with self._lock:
                self._closed = True
                busy = self._busy
            if not busy:
                self._drop_admin()

    def partitions(self) -> set[int]:
        """The topic's partitions, as of the last round."""
        return set(self._partitions)

    def lag(self) -> int:
        return sum(max(0, p.end - p.committed) for p in list(self._partitions.values()))

    def stalled(self, partitions: set[int], after_s: float) -> dict[int, int]:
        """Of ``partitions``, those with records waiting and no commit for ``after_s``: lag."""
        now = time.monotonic()
        return {
            n: p.end - p.committed
            for n, p in list(self._partitions.items())
            if n in partitions and p.end > p.committed and now - p.moved_at >= after_s
        }

    def problems(self, assigned: set[int], stall_after_s: float) -> list[str]:
        """What /health should say: a missing topic, a failed round, stalled partitions."""
        if not self.topic_exists:
            return [f"topic {self._topic} does not exist"]
        problems = [f"group monitor: {self.error}"] if self.error else []
        stalled = self.stalled(assigned, stall_after_s)
        if stalled:
            problems.append(
                f"stalled: partitions {sorted(stalled)} have {sum(stalled.values())} records "
                f"waiting and no commit for {stall_after_s:.0f}s"
            )
        return problems

    def _set_error(self, error: str) -> None:
        if error != self.error:
            log.warning("group monitor: %s", error)
        self.error = error

    def _apply(self, result: _Round) -> None:
        if result.topic_exists:
            if not self.topic_exists:
                log.info("topic %s exists %s", self._topic, "again" if self._seen_topic else "now")
            self._seen_topic = True
        elif self.topic_exists:  # gone since the last round, or missing from the start
            if self._seen_topic:
                log.error("topic %s was deleted: nothing to read", self._topic)
            else:
                log.warning("topic %s does not exist yet: waiting for it", self._topic)
        self.topic_exists = result.topic_exists
        self.error = ""
        now = time.monotonic()
        known = self._partitions
        for n in set(known) - set(result.partitions):
            del known[n]
        for n, (end, committed) in result.partitions.items():
            state = known.get(n)
            if state is None:
                known[n] = _Partition(end, committed, now)
                continue
            if committed != state.committed or state.end <= state.committed:
                state.moved_at = now
            state.end, state.committed = end, committed
        self.updated_at = now

    # -- worker thread -------------------------------------------------------------

    def _drop_admin(self) -> None:
        with self._lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing the admin client: %s", exc)

    def _measure(self) -> _Round:
        with self._lock:
            if self._closed:
                raise KafkaError("the group monitor is closed")
            self._busy = True
        try:
            return self._measure_with(self._open_admin())
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._drop_admin()

    def prepare_topics(self) -> list[str]:
        """Create the missing delay topics if the topic exists (blocking; at start-up,
        before the reader subscribes); return the retry tiers that exist beyond
        those asked for (RETRY_ATTEMPTS was lowered: their records must still be
        read). Raises KafkaError."""
        admin = self._open_admin()
        [described] = admin.describe_topics([self._topic])
        if described.get("error_code", 0) == 0 and described.get("partitions"):
            self._ensure_delay_topics(admin, len(described["partitions"]))
        return stray_tiers(admin.list_topics(), self._topic, self._delay_topics)

    def _ensure_delay_topics(self, admin: Any, partitions: int) -> None:
        if not self._delay_topics_ready:
            ensure_topics(admin, self._delay_topics, partitions, CALL_TIMEOUT_MS)
            self._delay_topics_ready = True

    def _open_admin(self) -> Any:
        if self._admin is not None:
            return self._admin
        admin = KafkaAdminClient(
            bootstrap_servers=self._brokers,
            client_id=f"pushtrio-{self._group}-monitor",
            request_timeout_ms=CALL_TIMEOUT_MS,
            bootstrap_timeout_ms=CALL_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )
        with self._lock:
            self._admin = admin
        return admin

    def _measure_with(self, admin: Any) -> _Round:
        [described] = admin.describe_topics([self._topic])
        if described.get("error_code", 0) != 0 or not described.get("partitions"):
            return _Round({}, topic_exists=False)
        tps = [TopicPartition(self._topic, p["partition_index"]) for p in described["partitions"]]
        self._ensure_delay_topics(admin, len(tps))
        ends = admin.list_partition_offsets(
            dict.fromkeys(tps, OffsetSpec.LATEST), timeout_ms=CALL_TIMEOUT_MS
        )
        starts = admin.list_partition_offsets(
            dict.fromkeys(tps, OffsetSpec.EARLIEST), timeout_ms=CALL_TIMEOUT_MS
        )
        committed = admin.list_group_offsets({self._group: tps}).get(self._group, {})
        partitions = {}
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp].offset
            partitions[tp.partition] = (ends[tp].offset, done)
        return _Round(partitions, topic_exists=True)
