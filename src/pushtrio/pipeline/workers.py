"""The worker pipeline: every record in, exactly one outcome out (or a later one).

  intake ──────> workers (WORKER_COUNT, a batch at a time) ──> settle_recv ─> settler
                decode + validate, expired?, duplicate?,             │
                breaker open? ─> park, rate limited? ─> defer,       ├─> dead letters and
                one provider call per provider:                      │   delay topics
                  transient failure ─> retry tier                    ├─> sinks (metrics,
                                                                     │   feed, logs)
                                                                     └─> settle (source)

Workers take records in batches of up to ``batch_size`` from the intake, highest
priority first (one worker at a time takes, so a batch holds all that is there, not
one record per idle worker):
one dedup look-up, one limiter round trip and one provider call per provider per
batch (as FCM's batch send and APNs's multiplexed HTTP/2 streams do). Nothing waits
in memory: a notification that cannot go out now (a transient failure, an open
circuit breaker, a full rate-limit window with RATE_LIMIT_POLICY=defer) becomes a
:class:`~pushtrio.contract.delays.Step`, a write to a delay topic that the source reads
back when it is due (see :mod:`.scheduler`). Delivered ids are recorded for dedup
by the worker right after the provider call, which keeps the crash window for a
second delivery short. The settler takes results in bulk: it writes dead letters
and delay-topic records, hands outcomes and steps to the sinks (metrics, the live
feed, the logs: each a plain callable) and only then settles the records with the
source, which lets their offsets be committed. Results flow one way: the pipeline
knows neither the service nor what its sinks do.

A backend that is down (Redis, the broker) stalls the affected stage with back-off
instead of losing or wrongly passing messages; it resumes by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

import trio

from ..contract.dead_letter import dead_letter
from ..contract.delays import Step, steps_by_topic, waiting
from ..contract.errors import InvalidNotification
from ..contract.notification import (
    Notification,
    fallback_id,
    parse_notification,
    peek_id,
    peek_user_id,
)
from ..contract.outcome import Outcome, OutcomeKind
from ..contract.records import Batch, Publisher, Record, origin
from ..providers.base import Provider
from ..source.intake import Intake
from ..stores.dedup import DedupStore
from ..stores.limiter import Limiter
from .attempt import Answer, first_attempts
from .backend_calls import BackendCalls
from .breaker import BreakerState, CircuitBreaker
from .policy import Scheduler, Settled, StageResult, outcome_of

log = logging.getLogger(__name__)

Candidates = list[tuple[Record, Notification]]
OutcomeSink = Callable[[Sequence[Outcome]], None]
"""Receives every settled group of outcomes, in the trio thread; must not block."""
StepSink = Callable[[Sequence[Step]], None]
"""Receives every group of notifications written to a delay topic; must not block."""


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    worker_count: int
    batch_size: int
    """Most records a worker takes at once."""
    max_in_flight: int
    """Results waiting for the settler, at most."""
    provider_timeout_s: float
    """The limit on one provider call (TimeBudgets.provider_call_s)."""
    dlq_topic: str


class Router(Protocol):
    """Picks the provider of notifications before their breakers are asked (delivery
    to devices: one whose devices the user has). Raises BackendError when its store
    fails (the call is retried like every backend call)."""

    async def route(self, notifications: Sequence[Notification]) -> list[Notification]: ...


class Pipeline:
    """Turns record batches into outcomes. Built by the service with its collaborators."""

    def __init__(
        self,
        options: PipelineOptions,
        *,
        limiter: Limiter,
        dedup: DedupStore,
        providers: dict[str, Provider],
        scheduler: Scheduler,
        breakers: dict[str, CircuitBreaker] | None = None,
        router: Router | None = None,
        dead_letters: Publisher,
        sinks: Iterable[OutcomeSink],
        step_sinks: Iterable[StepSink] = (),
        settle: Callable[[Sequence[Record]], None],
    ) -> None:
        self._options = options
        self._limiter = limiter
        self._dedup = dedup
        self._providers = providers
        self._scheduler = scheduler
        self._breakers = breakers or {}
        self._router = router
        self._dead_letters = dead_letters
        self._sinks = tuple(sinks)
        self._step_sinks = tuple(step_sinks)
        self._settle = settle
        self._claims: dict[str, Record] = {}
        self.backend = BackendCalls()
        """Every Redis and publisher call goes through it: retried until it passes;
        its ``last_backend_error`` and ``misconfigured_since`` say how it goes."""

    async def serve(
        self,
        intake: Intake,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run workers and the settler until ``intake`` is closed and drained.

        Returns once every record taken has been settled. On cancellation the
        unsettled records stay uncommitted and will be read again.
        """
        settle_send, settle_recv = trio.open_memory_channel[StageResult](
            self._options.max_in_flight
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_settler, settle_recv)
            async with settle_send, trio.open_nursery() as work:
                for _ in range(self._options.worker_count):
                    work.start_soon(self._run_worker, intake, settle_send)
                task_status.started()

    async def _run_worker(
        self, intake: Intake, settle_send: trio.MemorySendChannel[StageResult]
    ) -> None:
        # The intake hands a batch to one worker at a time: all there is, highest
        # priority first, up to batch_size (see source/intake.py).
        while batch := await intake.take(self._options.batch_size):
            await self._process_batch(batch, settle_send)

    async def _process_batch(
        self, batch: Batch, settle_send: trio.MemorySendChannel[StageResult]
    ) -> None:
        """Run ``batch`` through the stages; what each finished goes to the settler."""
        started = time.monotonic()
        done, candidates = self._screen(batch, started)
        if candidates:
            fresh, duplicates = await self._look_up(candidates, started)
            done.merge(duplicates)
            if self._router is not None:
                fresh = await self._route(self._router, fresh)
            callable_, parked = self._gate(fresh, started)
            done.merge(parked)
            allowed, refused = await self._limit(callable_, started)
            done.merge(refused)
            done.merge(await self._deliver_batch(allowed, started))
        if done.settled:
            await self._remember_delivered(done.settled)
        if done:
            await settle_send.send(done)

    def _screen(self, batch: Batch, started: float) -> tuple[StageResult, Candidates]:
        """Decode and validate; settle the invalid, expired and in-flight copies at once.

        The rest are claimed (until settled) so that a copy in another batch cannot
        pass the dedup look-up while this one is being delivered.
        """
        now = datetime.now(UTC)
        done = StageResult()
        settled = done.settled
        candidates: Candidates = []
        ids_in_batch: set[str] = set()
        for record in batch:
            # A record written again (a delay topic, a replay) keeps its first id.
            default_id = partial(fallback_id, *origin(record))
            try:
                notification = parse_notification(record.value, default_id=default_id)
            except InvalidNotification as exc:
                own_id = peek_id(record.value) or default_id()
                settled.append((record, self._invalid(record, own_id, exc)))
                continue
            if notification.is_expired(now):
                outcome = outcome_of(
                    OutcomeKind.EXPIRED,
                    notification,
                    record,
                    attempts=waiting(record).attempts,
                    started=started,
                )
                settled.append((record, outcome))
            elif notification.id in ids_in_batch or self._claimed_by_other(notification.id, record):
                outcome = outcome_of(OutcomeKind.DUPLICATE, notification, record, started=started)
                settled.append((record, outcome))
            else:
                ids_in_batch.add(notification.id)
                candidates.append((record, notification))
        for record, notification in candidates:
            self._claims[notification.id] = record
        return done, candidates

    async def _look_up(
        self, candidates: Candidates, started: float
    ) -> tuple[Candidates, StageResult]:
        """One dedup round trip: the fresh returned, the duplicates settled."""
        seen = await self.backend.call(
            "dedup look-up", lambda: self._dedup.seen_many([n.id for _, n in candidates])
        )
        fresh = []
        done = StageResult()
        for (record, notification), was_seen in zip(candidates, seen, strict=True):
            if was_seen:
                outcome = outcome_of(OutcomeKind.DUPLICATE, notification, record, started=started)
                done.settled.append((record, outcome))
            else:
                fresh.append((record, notification))
        return fresh, done

    async def _route(self, router: Router, candidates: Candidates) -> Candidates:
        """Let the router pick the provider (and so the breaker) of each notification."""
        notifications = [n for _, n in candidates]
        routed = await self.backend.call("device look-up", lambda: router.route(notifications))
        return [(record, n) for (record, _), n in zip(candidates, routed, strict=True)]

    def _gate(self, candidates: Candidates, started: float) -> tuple[Candidates, StageResult]:
        """Park the notifications whose provider's breaker refuses calls now; return
        the others."""
        done = StageResult()
        breakers = self._breakers
        if not breakers:
            return candidates, done
        passed = []
        for record, notification in candidates:
            breaker = breakers.get(notification.provider)
            if breaker is None or breaker.allow():
                passed.append((record, notification))
            else:
                done.place(record, self._scheduler.park(record, notification, breaker, started))
        return passed, done

    async def _limit(
        self, candidates: Candidates, started: float
    ) -> tuple[Candidates, StageResult]:
        """One limiter round trip: the refused are deferred or settled, the rest returned."""
        waits = await self.backend.call(
            "rate limit",
            lambda: self._limiter.decide_many([(n.user_id, n.id) for _, n in candidates]),
        )
        allowed = []
        done = StageResult()
        for (record, notification), wait_s in zip(candidates, waits, strict=True):
            if wait_s <= 0:
                allowed.append((record, notification))
                continue
            breaker = self._breakers.get(notification.provider)
            if breaker is not None:
                breaker.give_back()  # a probe slot it took, if half open
            done.place(record, self._scheduler.defer(record, notification, wait_s, started))
        return allowed, done

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

    async def _deliver_batch(self, items: Candidates, started: float) -> StageResult:
        """One provider call per provider and attempt number, concurrently."""
        groups: dict[tuple[str, int], Candidates] = {}
        for record, notification in items:
            attempt = waiting(record).attempts + 1
            groups.setdefault((notification.provider, attempt), []).append((record, notification))
        if len(groups) == 1:
            [((name, attempt), group)] = groups.items()
            return await self._attempt(name, attempt, group, started)
        done = StageResult()

        async def attempt_group(name: str, attempt: int, group: Candidates) -> None:
            # Merged as each call ends, as the calls' answers came in.
            done.merge(await self._attempt(name, attempt, group, started))

        async with trio.open_nursery() as nursery:
            for (name, attempt), group in groups.items():
                nursery.start_soon(attempt_group, name, attempt, group)
        return done

    async def _attempt(
        self, name: str, attempt: int, group: Candidates, started: float
    ) -> StageResult:
        """One provider call for ``group``: the outcomes settled, the retries moved."""
        provider = self._providers[name]
        breaker = self._breakers.get(name)
        try:
            results = await first_attempts(
                provider,
                [n for _, n in group],
                timeout_s=self._options.provider_timeout_s,
                attempt=attempt,
            )
        except Exception as exc:  # the per-message boundary, for a whole provider call
            log.exception("provider %s crashed", name)
            results = [Answer(f"internal error: {exc!r}", permanent=True)] * len(group)
        if breaker is not None:
            # The whole call is recorded first: a call whose failures open the
            # breaker parks all its transient failures, not only those after it opened.
            for answer in results:
                if answer.delivered:
                    breaker.record(True)
                elif answer.permanent:
                    breaker.answered()
                else:
                    breaker.record(False)
        provider_down = breaker is not None and breaker.state is not BreakerState.CLOSED
        done = StageResult()
        for (record, notification), answer in zip(group, results, strict=True):
            if answer.delivered:
                kind, error = OutcomeKind.DELIVERED, ""
            elif answer.permanent:
                kind, error = OutcomeKind.FAILED, answer.error
            elif breaker is not None and provider_down:
                # The provider is down, not this notification: wait for it rather
                # than spend the retries (or reach the dead-letter topic).
                parked = self._scheduler.park(record, notification, breaker, started, attempt)
                done.place(record, parked)
                continue
            else:
                after = self._scheduler.after_failure(
                    record,
                    notification,
                    attempt,
                    answer.error,
                    started,
                    not_before_s=answer.retry_after_s,
                    devices=answer.devices,
                )
                done.place(record, after)
                continue
            outcome = outcome_of(
                kind,
                notification,
                record,
                attempts=attempt,
                error=error,
                started=started,
                devices=answer.devices,
            )
            done.settled.append((record, outcome))
        return done

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

    async def _run_settler(self, settle_recv: trio.MemoryReceiveChannel[StageResult]) -> None:
        async with settle_recv:
            # A worker leaves a result alone once sent: the settler merges into it.
            async for done in settle_recv:
                while len(done.settled) + len(done.moved) < 5000:
                    try:
                        more = settle_recv.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    done.merge(more)
                await self._finish(done)

    async def _finish(self, done: StageResult) -> None:
        """Write dead letters and delay-topic records, tell the sinks, then settle.

        The writes are acknowledged before the records are settled: a crash in
        between reads them again (a copy in a delay topic then finds itself a
        duplicate or goes out once more: at least once, never lost).
        """
        settled, moved = done.settled, done.moved
        # Released before the writes: a record written to a delay topic can be read
        # back before the next write here is acknowledged, and is no copy.
        claims = self._claims
        for record, message_id in [(r, o.id) for r, o in settled] + [(r, s.id) for r, s in moved]:
            if claims.get(message_id) is record:
                del claims[message_id]
        letters = [dead_letter(r, o) for r, o in settled if o.event.dead_letter]
        if letters:
            topic = self._options.dlq_topic
            await self.backend.call(
                "dead-letter write", lambda: self._dead_letters.publish_many(topic, letters)
            )
        steps = [step for _, step in moved]
        for topic, messages, partitions in steps_by_topic(steps):
            await self.backend.call(
                f"write to {topic}",
                partial(self._dead_letters.publish_many, topic, messages, partitions),
            )
        if settled:
            outcomes = [o for _, o in settled]
            for sink in self._sinks:
                sink(outcomes)
        if steps:
            for step_sink in self._step_sinks:
                step_sink(steps)
        self._settle([r for r, _ in settled] + [r for r, _ in moved])
