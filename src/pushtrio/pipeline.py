"""The worker pipeline: every record in, exactly one outcome out.

  record_recv ─> workers (WORKER_COUNT, a batch at a time) ──────> settle_recv ─> settler
                decode + validate, expired?, duplicate?,        ^               │
                rate limit, first attempt: one provider call    │               ├─> sinks (metrics,
                per provider                                    │               │   feed, logs)
                └── transient failures ─> retry tasks ──────────┘               └─> settle (source)

Workers take records in batches of up to ``batch_size`` (one worker at a time waits
on the channel, so a batch holds all that is there, not one record per idle worker):
one dedup look-up, one limiter round trip and one
provider call per provider per batch (as FCM's batch send and APNs's multiplexed
HTTP/2 streams do). A notification that fails transiently is retried in a task of
its own (bounded by ``max_in_flight``), so back-off waits never hold up a worker.
Delivered ids are recorded for dedup by the worker right after the provider call,
which keeps the crash window for a second delivery short. The settler takes
outcomes in bulk: it writes dead letters, hands the outcomes to every sink (metrics,
the live feed, the logs: each a plain callable) and only then settles the records
with the source, which lets their offsets be committed. Outcomes flow one way: the
pipeline knows neither the service nor what its sinks do.

A backend that is down (Redis, the dead-letter topic) stalls the affected stage with
back-off instead of losing or wrongly passing messages; it resumes by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import trio

from .backend_calls import BackendCalls
from .dead_letter import dead_letter
from .dedup import DedupStore
from .delivery import deliver, first_attempts
from .errors import InvalidNotification
from .limiter import Limiter
from .model import (
    Notification,
    Outcome,
    OutcomeKind,
    fallback_id,
    parse_notification,
    peek_id,
    peek_user_id,
)
from .providers.base import Provider
from .records import Batch, Publisher, Record, origin

log = logging.getLogger(__name__)

Settled = list[tuple[Record, Outcome]]
Candidates = list[tuple[Record, Notification]]
OutcomeSink = Callable[[Sequence[Outcome]], None]
"""Receives every settled group of outcomes, in the trio thread; must not block."""


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    worker_count: int
    batch_size: int
    """Most records a worker takes at once."""
    max_in_flight: int
    retry_attempts: int
    retry_delay_s: float
    provider_timeout_s: float
    dlq_topic: str


class Pipeline:
    """Turns record batches into outcomes. Built by the service with its collaborators."""

    def __init__(
        self,
        options: PipelineOptions,
        *,
        limiter: Limiter,
        dedup: DedupStore,
        providers: dict[str, Provider],
        dead_letters: Publisher,
        sinks: Iterable[OutcomeSink],
        settle: Callable[[Sequence[Record]], None],
    ) -> None:
        self._options = options
        self._limiter = limiter
        self._dedup = dedup
        self._providers = providers
        self._dead_letters = dead_letters
        self._sinks = tuple(sinks)
        self._settle = settle
        self._slots = trio.Semaphore(options.max_in_flight)
        self._taking = trio.Lock()  # one worker at a time waits on the channel
        self._claims: dict[str, Record] = {}
        self.backend = BackendCalls()
        """Every Redis and dead-letter call goes through it: retried until it passes;
        its ``last_backend_error`` and ``misconfigured_since`` say how it goes."""

    async def serve(
        self,
        record_recv: trio.MemoryReceiveChannel[Record],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run workers, deliveries and the settler until ``record_recv`` is closed and drained.

        Returns once every record taken has been settled. On cancellation the
        unsettled records stay uncommitted and will be read again.
        """
        settle_send, settle_recv = trio.open_memory_channel[Settled](self._options.max_in_flight)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_settler, settle_recv)
            async with settle_send, record_recv, trio.open_nursery() as work:
                for _ in range(self._options.worker_count):
                    work.start_soon(self._run_worker, record_recv.clone(), settle_send, work)
                task_status.started()

    async def _run_worker(
        self,
        record_recv: trio.MemoryReceiveChannel[Record],
        settle_send: trio.MemorySendChannel[Settled],
        work: trio.Nursery,
    ) -> None:
        async with record_recv:
            while batch := await self._take_batch(record_recv):
                await self._process_batch(batch, settle_send, work)

    async def _take_batch(self, record_recv: trio.MemoryReceiveChannel[Record]) -> Batch:
        """Wait for a record, then take what else is there, up to ``batch_size``.

        Empty once the channel is closed and drained.
        """
        async with self._taking:
            try:
                batch = [await record_recv.receive()]
            except trio.EndOfChannel:
                return []
            take = record_recv.receive_nowait
            while len(batch) < self._options.batch_size:
                try:
                    batch.append(take())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            return batch

    async def _process_batch(
        self, batch: Batch, settle_send: trio.MemorySendChannel[Settled], work: trio.Nursery
    ) -> None:
        started = time.monotonic()
        settled, candidates = self._screen(batch, started)
        if candidates:
            refused, to_deliver = await self._admit(candidates, started)
            finished, retries = await self._deliver_batch(to_deliver, started)
            settled += refused + finished
            for record, notification in retries:
                await self._slots.acquire()
                work.start_soon(self._retry, record, notification, settle_send, started)
        if settled:
            await self._remember_delivered(settled)
            await settle_send.send(settled)

    def _screen(self, batch: Batch, started: float) -> tuple[Settled, Candidates]:
        """Decode and validate; settle the invalid, expired and in-flight copies at once.

        The rest are claimed (until settled) so that a copy in another batch cannot
        pass the dedup look-up while this one is being delivered.
        """
        now = datetime.now(UTC)
        settled: Settled = []
        candidates: Candidates = []
        ids_in_batch: set[str] = set()
        for record in batch:
            # A replayed record keeps the id its first copy had, so dedup knows it.
            default_id = partial(fallback_id, *origin(record))
            try:
                notification = parse_notification(record.value, default_id=default_id)
            except InvalidNotification as exc:
                own_id = peek_id(record.value) or default_id()
                settled.append((record, self._invalid(record, own_id, exc)))
                continue
            if notification.is_expired(now):
                outcome = _outcome(OutcomeKind.EXPIRED, notification, record, started=started)
                settled.append((record, outcome))
            elif notification.id in ids_in_batch or self._claimed_by_other(notification.id, record):
                outcome = _outcome(OutcomeKind.DUPLICATE, notification, record, started=started)
                settled.append((record, outcome))
            else:
                ids_in_batch.add(notification.id)
                candidates.append((record, notification))
        for record, notification in candidates:
            self._claims[notification.id] = record
        return settled, candidates

    async def _admit(self, candidates: Candidates, started: float) -> tuple[Settled, Candidates]:
        """Dedup look-up, then the rate limit, one round trip each.

        Returns the outcomes of the refused (duplicate, rate-limited) and what may go out.
        """
        seen = await self.backend.call(
            "dedup look-up", lambda: self._dedup.seen_many([n.id for _, n in candidates])
        )
        settled: Settled = []
        fresh = []
        for (record, notification), was_seen in zip(candidates, seen, strict=True):
            if was_seen:
                outcome = _outcome(OutcomeKind.DUPLICATE, notification, record, started=started)
                settled.append((record, outcome))
            else:
                fresh.append((record, notification))
        allowed = await self.backend.call(
            "rate limit",
            lambda: self._limiter.acquire_many([(n.user_id, n.id) for _, n in fresh]),
        )
        to_deliver = []
        for (record, notification), ok in zip(fresh, allowed, strict=True):
            if ok:
                to_deliver.append((record, notification))
            else:
                outcome = _outcome(OutcomeKind.RATE_LIMITED, notification, record, started=started)
                settled.append((record, outcome))
        return settled, to_deliver

    def _claimed_by_other(self, message_id: str, record: Record) -> bool:
        """Whether another record holding ``message_id`` is in flight here.

        The same record read again (its partition came back after a rebalance) is
        not a copy: treating it as a duplicate would commit it while the original,
        whose result no longer counts, might never finish.
        """
        holder = self._claims.get(message_id)
        if holder is None:
            return False
        return (holder.partition, holder.offset, holder.topic) != (
            record.partition,
            record.offset,
            record.topic,
        )

    async def _remember_delivered(self, settled: Settled) -> None:
        """Record delivered ids for dedup right after the provider accepted them.

        Done here rather than by the settler to keep the window in which a crash
        can cause a second delivery (accepted, not yet recorded) as short as possible.
        """
        delivered = [o.id for _, o in settled if o.event is OutcomeKind.DELIVERED]
        if delivered:
            await self.backend.call("dedup record", lambda: self._dedup.remember_many(delivered))

    async def _deliver_batch(self, items: Candidates, started: float) -> tuple[Settled, Candidates]:
        """First attempts, one provider call per provider, concurrently.

        Returns the finished outcomes and what is worth a retry.
        """
        by_provider: dict[str, Candidates] = {}
        for record, notification in items:
            by_provider.setdefault(notification.provider, []).append((record, notification))
        if not by_provider:
            return [], []
        if len(by_provider) == 1:
            [(name, group)] = by_provider.items()
            return await self._first_attempt(name, group, started)
        results: dict[str, tuple[Settled, Candidates]] = {}

        async def attempt(name: str, group: Candidates) -> None:
            results[name] = await self._first_attempt(name, group, started)

        async with trio.open_nursery() as nursery:
            for name, group in by_provider.items():
                nursery.start_soon(attempt, name, group)
        settled: Settled = []
        retries: Candidates = []
        for finished, again in results.values():
            settled += finished
            retries += again
        return settled, retries

    async def _first_attempt(
        self, name: str, group: Candidates, started: float
    ) -> tuple[Settled, Candidates]:
        """One provider call for ``group``; returns its finished outcomes and its retries."""
        provider = self._providers[name]
        notifications = [n for _, n in group]
        try:
            results = await first_attempts(
                provider, notifications, timeout_s=self._options.provider_timeout_s
            )
        except Exception as exc:  # the per-message boundary, for a whole provider call
            log.exception("provider %s crashed", name)
            results = [(f"internal error: {exc!r}", True)] * len(group)
        can_retry = self._options.retry_attempts > 0
        settled: Settled = []
        retries: Candidates = []
        for (record, notification), failure in zip(group, results, strict=True):
            if failure is None:
                kind, error = OutcomeKind.DELIVERED, ""
            elif can_retry and not failure[1]:
                retries.append((record, notification))
                continue
            else:
                kind, error = OutcomeKind.FAILED, failure[0]
            outcome = _outcome(kind, notification, record, attempts=1, error=error, started=started)
            settled.append((record, outcome))
        return settled, retries

    def _invalid(self, record: Record, default_id: str, exc: InvalidNotification) -> Outcome:
        reason = exc.reason if exc.field is None else f"{exc.field}: {exc.reason}"
        return Outcome(
            OutcomeKind.INVALID,
            default_id,
            user_id=peek_user_id(record.value),
            error=reason,
            ts=time.time(),
            partition=record.partition,
            offset=record.offset,
        )

    async def _retry(
        self,
        record: Record,
        notification: Notification,
        settle_send: trio.MemorySendChannel[Settled],
        started: float,
    ) -> None:
        """Retries after a transient first failure, in a task of their own (back-off waits)."""
        try:
            provider = self._providers[notification.provider]
            result = await deliver(
                provider,
                notification,
                retry_attempts=self._options.retry_attempts,
                retry_delay_s=self._options.retry_delay_s,
                timeout_s=self._options.provider_timeout_s,
                start_attempt=2,
            )
            kind = OutcomeKind.DELIVERED if result.ok else OutcomeKind.FAILED
            attempts, error = result.attempts, result.error
        except Exception as exc:  # the per-message boundary: record, log, go on
            log.exception("delivery of %s crashed", notification.id)
            kind, attempts, error = OutcomeKind.FAILED, 1, f"internal error: {exc!r}"
        finally:
            self._slots.release()
        outcome = _outcome(
            kind, notification, record, attempts=attempts, error=error, started=started
        )
        await settle_send.send([(record, outcome)])

    async def _run_settler(self, settle_recv: trio.MemoryReceiveChannel[Settled]) -> None:
        async with settle_recv:
            async for first in settle_recv:
                settled = list(first)
                while len(settled) < 5000:
                    try:
                        settled.extend(settle_recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._finish(settled)

    async def _finish(self, settled: Settled) -> None:
        # Deliveries that took retries come one by one: recorded here, in bulk.
        await self._remember_delivered([(r, o) for r, o in settled if o.attempts > 1])
        letters = [dead_letter(r, o) for r, o in settled if o.event.dead_letter]
        if letters:
            topic = self._options.dlq_topic
            await self.backend.call(
                "dead-letter write", lambda: self._dead_letters.publish_many(topic, letters)
            )
        outcomes = [o for _, o in settled]
        claims = self._claims
        for record, outcome in settled:
            if claims.get(outcome.id) is record:
                del claims[outcome.id]
        for sink in self._sinks:
            sink(outcomes)
        self._settle([r for r, _ in settled])


def _outcome(
    kind: OutcomeKind,
    notification: Notification,
    record: Record,
    *,
    attempts: int = 0,
    error: str = "",
    started: float | None = None,
) -> Outcome:
    return Outcome(
        kind,
        notification.id,
        user_id=notification.user_id,
        provider=notification.provider,
        priority=notification.priority,
        attempts=attempts,
        latency_ms=0.0 if started is None else (time.monotonic() - started) * 1000,
        error=error,
        ts=time.time(),
        partition=record.partition,
        offset=record.offset,
    )
