"""The Kafka reader: one OS thread owns kafka-python's KafkaConsumer.

The thread is the only code that calls the consumer (poll, pause/resume, seek,
commit, close). It hands records into trio with one ``from_thread`` hop per poll.
When the channel to the workers is full it keeps the rest, pauses its partitions
and keeps polling, so ``max_poll_interval_ms`` never expires and the
group keeps the member; it resumes once everything is handed over.

The urgent lane (.lanes): while the urgent topic has records not polled yet, the
main topic's partitions are paused (at most HOLD_MAX_S at a time). The urgent topic
has its own back-pressure, so that a flood of it never keeps the main topic paused.

Rebalances are handled by .rebalance: on revoke the listener commits what is settled
and drops the partitions' state; on assign it queues the partitions, which the
reader thread seeks to their committed offsets.

What /health shows of the reader (connected, paused, its last error) is one
:class:`~.status.ReaderStatus`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import trio
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ...contract.errors import BackendError
from ...contract.lanes import MAIN, URGENT
from ...contract.records import Record
from ..intake import Intake
from ..tracker import OffsetTracker
from .clients import CALL_TIMEOUT_MS, new_consumer
from .errors import DECODE_ERRORS, StuckPartitions, describe
from .fetcher_fix import release_parked
from .held import HeldRecords
from .lanes import LaneGate, fetch_idle_partitions, unread
from .membership import Membership
from .monitor import GroupMonitor
from .polled import offsets_by_partition, to_records
from .rebalance import Assignments, Listener
from .status import ErrorKind, ReaderError, ReaderStatus

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 100
COMMIT_INTERVAL_S = 0.2
STALL_AFTER_S = 30.0
"""Records waiting on an assigned partition whose commit has not moved for this long
make /health report the pipeline as stalled."""
READER_STUCK_S = 30.0
"""A reader thread that has not gone round its loop for this long is reported stuck."""
ERROR_PAUSE_S = 0.5
CLOSE_GRACE_S = 5.0
"""How long shutdown waits for the reader thread's final commit and close before
abandoning it (a thread stuck inside kafka-python must not keep the process alive)."""


class KafkaSource:
    """Consumes ``topic`` in ``group`` and feeds record batches to the workers."""

    mode = "kafka"

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str,
        group: str,
        *,
        batch_size: int,
        delay_topics: Sequence[str] = (),
        urgent_topic: str = "",
    ) -> None:
        self._brokers = list(brokers)
        self._topic = topic
        self._urgent_topic = urgent_topic
        self.lanes = LaneGate()
        self._unread = {MAIN: 0, URGENT: 0} if urgent_topic else {MAIN: 0}
        self.held = HeldRecords(delay_topics)
        self._group = group
        self.batch_size = batch_size
        self.tracker = OffsetTracker()
        self._assignments = Assignments(self.tracker)
        self._consumer: Any = None
        side_topics = [*delay_topics, *([urgent_topic] if urgent_topic else [])]
        self.monitor = GroupMonitor(brokers, topic, group, delay_topics=side_topics)
        self._intake_stopped = threading.Event()
        self._closing = threading.Event()
        self.status = ReaderStatus()
        self.stuck = StuckPartitions()
        self.membership = Membership([topic, *side_topics], group, self.monitor, self._listener)
        self.loop_at = time.monotonic()
        """When the reader thread last went round its loop (monotonic seconds)."""
        self._all_paused = False  # intake stopped: every partition paused, for good

    # -- trio side ---------------------------------------------------------------------

    async def serve(
        self,
        intake: Intake,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the reader thread; see :class:`~pushtrio.source.Source`.

        Reports started once the consumer has bootstrapped and subscribed. Raises
        BackendError if the brokers cannot be reached at start-up. On cancellation
        the thread is told to close, commits what is settled (never more) and is
        waited for.
        """
        self._intake = intake
        # Not closed when the brokers cannot be reached: the service tries again.
        consumer = await trio.to_thread.run_sync(self._open_consumer)
        self._consumer = consumer
        token = trio.lowlevel.current_trio_token()
        try:
            thread_done = trio.Event()
            thread_scope = trio.CancelScope(shield=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_thread, token, thread_done, thread_scope)
                nursery.start_soon(self.monitor.serve)
                try:
                    task_status.started()
                    await trio.to_thread.run_sync(self._intake_stopped.wait, abandon_on_cancel=True)
                    intake.close()
                    await trio.to_thread.run_sync(self._closing.wait, abandon_on_cancel=True)
                finally:
                    # Also on cancellation (a crash elsewhere): the thread must end,
                    # or it would keep the group's partitions while doing nothing.
                    self._intake_stopped.set()
                    self._closing.set()
                    with trio.move_on_after(CLOSE_GRACE_S, shield=True):
                        await thread_done.wait()
                    if not thread_done.is_set():
                        thread_scope.cancel()
                        log.warning(
                            "Kafka reader did not stop within %.0fs (stuck in the client): "
                            "abandoning it; unsettled records stay uncommitted",
                            CLOSE_GRACE_S,
                        )
                    nursery.cancel_scope.cancel()
        finally:
            intake.close()

    async def _run_thread(
        self, token: trio.lowlevel.TrioToken, done: trio.Event, scope: trio.CancelScope
    ) -> None:
        try:
            # Shielded, so that a cancellation from above still lets the thread make
            # its final commit; ``scope.cancel()`` abandons it (a daemon thread stuck
            # inside kafka-python must not keep the process alive).
            with scope:
                await trio.to_thread.run_sync(self._thread_main, token, abandon_on_cancel=True)
        finally:
            done.set()

    def _open_consumer(self) -> Any:
        try:
            stray = self.monitor.prepare_topics()
            if stray:
                log.warning("reading %s too: retry tiers beyond RETRY_ATTEMPTS", ", ".join(stray))
                self.held.add_topics(stray)
                self.membership.add_topics(stray)
            consumer = new_consumer(self._brokers, self._group, max_poll_records=self.batch_size)
            consumer.subscribe(self.membership.topics, listener=self._listener())
        except KafkaError as exc:
            error = self.status.fail(
                ErrorKind.CONNECT,
                f"cannot reach Kafka at {','.join(self._brokers)}: {describe(exc)}",
            )
            raise BackendError(error.message) from exc
        self.status.connected = True
        self.status.error = None
        return consumer

    def _listener(self) -> Listener:
        return Listener(
            self.tracker,
            self._assignments,
            changed=self.membership.assignment_changed,
            consumer=lambda: self._consumer,
        )

    def _offer(self, pending: list[Record]) -> int:
        """Runs in trio: put as many records as the channel holds; return how many went.

        Records of a partition that moved meanwhile (stale epoch) are dropped: their
        new owner reads them. Registering right after the sends is safe: this runs in
        trio, so no worker can settle a record in between.
        """
        current: dict[tuple[str, int], bool] = {}
        sent: list[Record] = []
        send = self._intake.put_nowait
        done = 0
        for record in pending:
            tp = (record.topic, record.partition)
            ok = current.get(tp)
            if ok is None:
                ok = current[tp] = self.tracker.is_current(tp, record.epoch)
            if ok:
                try:
                    send(record)
                except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                sent.append(record)
            done += 1
        self._register(sent)
        return done

    def _register(self, records: list[Record]) -> None:
        for (topic, partition, epoch), offsets in offsets_by_partition(records).items():
            self.tracker.hand_out((topic, partition), epoch, offsets)

    def release(self) -> None:
        """Leave the consumer group (thread-safe): the partitions go to healthy members.

        Settled offsets are committed on the way out; the unsettled records are read
        again by the partitions' next owners. :meth:`rejoin` undoes it.
        """
        self.membership.release()

    def rejoin(self) -> None:
        """Join the group again after :meth:`release` (thread-safe)."""
        self.membership.rejoin()

    def stop_intake(self) -> None:
        self._intake_stopped.set()

    async def aclose(self) -> None:
        self._intake_stopped.set()
        self._closing.set()

    def settle(self, records: Sequence[Record]) -> None:
        for (topic, partition, epoch), offsets in offsets_by_partition(records).items():
            self.tracker.settle((topic, partition), epoch, offsets)

    def in_flight(self) -> int:
        return self.tracker.in_flight()

    def lag(self) -> int:
        return self.monitor.lag()

    def unread(self) -> dict[str, int]:
        return dict(self._unread)

    def health(self) -> dict[str, Any]:
        assigned = {p for t, p in self.tracker.assigned() if t == self._topic}
        status = self.status
        error = status.error
        errors = [error.message] if error else []
        errors += self.monitor.problems(assigned, STALL_AFTER_S) + self.stuck.problems()
        since_loop = time.monotonic() - self.loop_at
        if status.connected and since_loop > READER_STUCK_S:
            errors.append(f"reader thread stuck in the Kafka client for {since_loop:.0f}s")
        if self.membership.released and self.monitor.topic_exists:
            errors.append(f"left the consumer group {self._group} (see workers)")
        return {
            "healthy": status.connected and not errors,
            "brokers": ",".join(self._brokers),
            "topic": self._topic,
            "group": self._group,
            "assigned_partitions": sorted(assigned),
            "paused": status.paused,
            "delayed_held": len(self.held),
            "urgent_topic": self._urgent_topic or None,
            "main_held_for_urgent": self.lanes.holding,
            "lag": self.monitor.lag(),
            "stuck_partitions": self.stuck.report(),
            "error": "; ".join(errors) or None,
        }

    # -- the reader thread -------------------------------------------------------------

    def _thread_main(self, token: trio.lowlevel.TrioToken) -> None:
        consumer = self._consumer
        pending: list[Record] = []
        last_commit = 0.0
        try:
            while not self._closing.is_set():
                if not self._round(consumer, token, pending):
                    continue
                now = time.monotonic()
                if now - last_commit >= COMMIT_INTERVAL_S:
                    self._commit(consumer)
                    last_commit = now
        except trio.RunFinishedError:
            log.warning("trio run finished under the Kafka reader; closing")
        except Exception as exc:
            self.status.fail(ErrorKind.CRASH, describe(exc))
            log.exception("Kafka reader failed")
            raise
        finally:
            try:
                self._commit(consumer)
            finally:
                consumer.close(autocommit=False)
                self.status.connected = False

    def _round(self, consumer: Any, token: trio.lowlevel.TrioToken, pending: list[Record]) -> bool:
        """One turn of the reader loop: poll, then hand what it read to the workers.

        ``pending`` holds what the workers could not take yet; it is updated in place.
        False when it read nothing (out of the group, or the poll failed): the loop
        then goes round again without a commit.
        """
        # Leave, join or rejoin the group (see .membership); what is pending
        # belongs to partitions being revoked.
        if self.membership.update(consumer):
            pending.clear()
        if self.membership.released:
            self.loop_at = time.monotonic()
            self._closing.wait(ERROR_PAUSE_S)
            return False
        self.loop_at = time.monotonic()
        release_parked(consumer)  # see .fetcher_fix
        records = self._poll(consumer)
        if self._urgent_topic and records:
            fetch_idle_partitions(consumer)  # see .lanes
        # The round's one assignment step. The group's join, and so the listener's
        # assign, runs inside ``poll``; hence right after it, failed or not, so that
        # the partitions are sought before the next poll fetches from them. What this
        # poll returned of them may come from a stale fetch position: it is dropped
        # (``fresh``) and read again from the committed offset.
        fresh = self._take_assignments(consumer, pending)
        if records is None:
            return False
        if not records and not pending and not consumer.assignment():
            # With no partitions (a topic gone, a group still forming)
            # kafka-python can return at once: never spin on it.
            spare = POLL_TIMEOUT_MS / 1000 - (time.monotonic() - self.loop_at)
            if spare > 0:
                self._closing.wait(spare)
        self.stuck.retry(consumer, records, resume=not self.status.paused)
        if not self._intake_stopped.is_set():
            pending.extend(self.held.hold(to_records(records, fresh, self.tracker.epoch)))
            pending.extend(self.held.release_due())
            pending[:] = self._hand_over(consumer, token, pending)
        elif not self._all_paused:
            pending.clear()
            self.held.clear()
            self._pause_all(consumer)
            self._all_paused = True
        return True

    def _poll(self, consumer: Any) -> dict[Any, list[Any]] | None:
        """One poll's records; None when it failed (reported, and waited out unless
        the partition of an undecodable batch could be stopped)."""
        try:
            records: dict[Any, list[Any]] = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except DECODE_ERRORS as exc:
            if not self.stuck.stop(consumer, exc):
                self.status.fail(ErrorKind.DECODE, f"cannot decode a record batch: {describe(exc)}")
                self._closing.wait(ERROR_PAUSE_S)
            return None
        except KafkaError as exc:
            # The broker is away: report it, keep the member alive, try again.
            self.status.fail(ErrorKind.POLL, f"poll failed: {describe(exc)}")
            log.warning("poll failed (retrying): %s", describe(exc))
            self._closing.wait(ERROR_PAUSE_S)
            return None
        self.status.clear(ErrorKind.POLL)
        return records

    def _take_assignments(self, consumer: Any, pending: list[Record]) -> set[tuple[str, int]]:
        """Apply the partitions assigned since the last round (see .rebalance); drop
        what is pending or held of them, since they are read again. Returns them."""
        assigned = self._assignments.apply(consumer)
        if not assigned:
            return set()
        fresh = {(tp.topic, tp.partition) for tp in assigned}
        pending[:] = [r for r in pending if (r.topic, r.partition) not in fresh]
        self.held.forget(fresh)
        if self.status.paused:
            consumer.pause(*(tp for tp in assigned if tp.topic != self._urgent_topic))
        return fresh

    def _hand_over(
        self, consumer: Any, token: trio.lowlevel.TrioToken, pending: list[Record]
    ) -> list[Record]:
        if pending:
            taken = trio.from_thread.run_sync(self._offer, pending, trio_token=token)
            pending = pending[taken:]
        self._set_pauses(consumer, pending)
        return pending

    def _set_pauses(self, consumer: Any, pending: list[Record]) -> None:
        """Pause what must wait, resume the rest (a stuck partition is left to .errors).

        - Back-pressure: records waiting here to be handed over hold back their lane.
          With the urgent lane on, the urgent and delay topics (the **first** topics:
          what is due now) have one of their own, once a batch of their records
          waits; the main topic waits for any of its records. With it off, every
          partition waits for any record.
        - A delay-topic partition whose head is not due waits (see .held).
        - The main topic waits while a first topic has records not polled yet, at
          most HOLD_MAX_S at a time (see .lanes).
        """
        urgent = self._urgent_topic
        first = self.held.topics | {urgent} if urgent else frozenset()
        first_waiting = sum(1 for record in pending if record.topic in first)
        main_blocked = first_waiting < len(pending)
        first_blocked = first_waiting >= self.batch_size if urgent else main_blocked
        stuck = self.stuck
        held = self.held
        hold: set[Any] = set()
        main: list[Any] = []
        open_first: list[Any] = []
        for tp in consumer.assignment():
            if (tp.topic, tp.partition) in stuck:
                continue
            if tp.topic in held.topics and held.waiting(tp.topic, tp.partition):
                hold.add(tp)
            elif tp.topic in first:
                if first_blocked:
                    hold.add(tp)
                else:
                    open_first.append(tp)
            else:
                if main_blocked:
                    hold.add(tp)
                if tp.topic == self._topic:
                    main.append(tp)
        if urgent:
            urgent_unread = unread(consumer, (tp for tp in open_first if tp.topic == urgent))
            due_unread = unread(consumer, (tp for tp in open_first if tp.topic != urgent))
            self._unread = {MAIN: unread(consumer, main), URGENT: urgent_unread}
            if not main_blocked and self.lanes.hold_main(urgent_unread + due_unread):
                hold.update(main)
        paused = {tp for tp in consumer.paused() if (tp.topic, tp.partition) not in stuck}
        if hold - paused:
            consumer.pause(*(hold - paused))
        if paused - hold:
            consumer.resume(*(paused - hold))
        if main_blocked != self.status.paused:
            log.debug("main lane %s", "paused" if main_blocked else "resumed")
        self.status.paused = main_blocked

    def _pause_all(self, consumer: Any) -> None:
        consumer.pause(*consumer.assignment())
        self.status.paused = True

    def _commit(self, consumer: Any) -> None:
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        # A partition revoked since committable() was read is left to the revoke
        # callback's own commit: committing it here could move it backwards.
        ready = {tp: o for tp, o in self.tracker.committable().items() if tp in assigned}
        if not ready:
            self.status.clear(ErrorKind.COMMIT)
            return
        offsets = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in ready.items()
        }
        try:
            consumer.commit(offsets, timeout_ms=CALL_TIMEOUT_MS)
        except KafkaError as exc:
            message = describe(exc)
            error = ReaderError(ErrorKind.COMMIT, f"commit failed: {message}")
            if self.status.error != error:
                log.warning("commit failed (will retry): %s", message)
            self.status.error = error
            return
        # The brokers took a commit: whatever failed before (a poll, a batch that could
        # not be decoded) is reported no more.
        self.status.error = None
        self.tracker.mark_committed(ready)
