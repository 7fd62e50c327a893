"""One running instance: start-up in dependency order, shutdown in one function.

    Service.serve
    ├── web server (Hypercorn + Quart-Trio)     started first, stopped last
    ├── source (Kafka reader thread or embedded queue)   started last, closed in finally
    └── drain scope (deadline SHUTDOWN_TIMEOUT once stopping)
        ├── pipeline (workers, deliveries, settler)   started before the source reads
        └── guard: leave the group while a backend refuses us

The shape is hypercorn's ``worker_serve``: each part is started with
``await nursery.start(...)`` and reports when it is ready; shutdown puts a deadline
on the drain scope and the cleanup lives in ``finally`` (shielded, bounded), so a
crash, a cancellation and a signal take the same path.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any, BinaryIO

import trio

from .. import __version__
from ..budgets import TimeBudgets
from ..config import Settings
from ..contract.errors import BackendError
from ..pipeline.breaker import DEFAULT_WINDOW, BreakerOptions, BreakerState, build_breakers
from ..pipeline.policy import Scheduler, SchedulerOptions
from ..pipeline.workers import OutcomeSink, Pipeline, PipelineOptions
from ..providers import (
    DeviceDelivery,
    ProviderOptions,
    RealProviderOptions,
    build_device_providers,
    build_providers,
)
from ..sinks.events import BreakerEvent, EventHub, TokenPrunedEvent
from ..sinks.metrics import Metrics
from ..sinks.outcome_log import OutcomeJournal, OutcomeLogger
from ..source import batch_size_for
from ..source.intake import Intake
from ..stores.devices import Device
from ..web import AppHandles, WebOptions
from ..web.server import serve_web
from .backends import Backends, delay_topics, open_backends
from .guards import RETRY_MAX_S, await_backends, release_while_refused
from .health import health_document
from .replay import replayer_for

log = logging.getLogger("pushtrio.service")

CLOSE_TIMEOUT_S = 10.0
"""Limit on the source's final commit and close, after the drain."""


def web_options(settings: Settings) -> WebOptions:
    """What the web layer needs of the settings."""
    return WebOptions(
        host=settings.host,
        port=settings.port,
        lanes=settings.lanes,
        admin_token=settings.admin_token,
    )


def real_provider_options(settings: Settings, budgets: TimeBudgets) -> RealProviderOptions:
    """What the real providers need of the settings."""
    return RealProviderOptions(
        fcm_credentials_file=settings.fcm_credentials_file,
        fcm_endpoint=settings.fcm_endpoint,
        apns_key_file=settings.apns_key_file,
        apns_key_id=settings.apns_key_id,
        apns_team_id=settings.apns_team_id,
        apns_topic=settings.apns_topic,
        apns_endpoint=settings.apns_endpoint,
        apns_ca_file=settings.apns_ca_file,
        budgets=budgets,
    )


class Service:
    """One instance; ``await nursery.start(service.serve, stop)`` to run it.

    Only the service (and the CLI) read :class:`Settings`: every part below it gets
    plain values or a small options object.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budgets = TimeBudgets.from_provider_timeout(settings.provider_timeout_s)
        """Every wait derived from PROVIDER_TIMEOUT, for the providers and the pipeline."""
        self.hub = EventHub()
        self._files = ExitStack()
        self.providers = build_providers(
            ProviderOptions(
                success_rates=settings.provider_success_rates,
                latency_s=settings.provider_latency_s,
                seed=settings.provider_seed,
                journal=self._open_log(settings.mock_provider_journal),
            )
        )
        self.devices: DeviceDelivery | None = None
        """Delivery to device tokens, when a real provider is configured."""
        if settings.real_providers:
            self.providers, self.devices = build_device_providers(
                self.providers, real_provider_options(settings, self.budgets), self._token_pruned
            )
        self.breakers = build_breakers(
            self.providers,
            BreakerOptions(
                failure_rate=settings.breaker_failure_rate,
                min_calls=settings.breaker_min_calls,
                window=max(DEFAULT_WINDOW, settings.breaker_min_calls),
                open_for_s=settings.breaker_open_for_s,
            ),
            on_change=self._breaker_changed,
        )
        self.metrics = Metrics(worker_count=settings.worker_count, providers=self.providers)
        self.metrics.bind_breakers(
            lambda: {n: (b.state.value, b.transitions) for n, b in self.breakers.items()}
        )
        self.backends: Backends | None = None
        self.pipeline: Pipeline | None = None
        self.addresses: list[str] = []
        self._intake: Intake | None = None
        self._source_ready = False

    async def serve(
        self,
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until ``stop`` is set, then shut down gracefully; returns when all is closed.

        Reports the web server's bound addresses once the source is reading.
        Raises OSError if the port cannot be bound, BackendMisconfigured if a
        backend refuses us at start-up. On cancellation the same cleanup runs
        (final commit of what is settled, files closed); unsettled records stay
        uncommitted.
        """
        for notice in self.settings.notices:
            log.warning("%s", notice)
        try:
            async with open_backends(self.settings) as backends:
                self.backends = backends
                if self.devices is not None:
                    self.devices.registry = backends.devices
                await self._serve_with(backends, stop, task_status)
        finally:
            if self.devices is not None:
                with trio.CancelScope(shield=True) as closing:
                    closing.deadline = trio.current_time() + CLOSE_TIMEOUT_S
                    await self.devices.aclose()
            self._files.close()

    async def _serve_with(
        self, backends: Backends, stop: trio.Event, task_status: trio.TaskStatus[list[str]]
    ) -> None:
        settings, source = self.settings, backends.source
        intake = self._intake = Intake(settings.max_queue_size)
        pipeline = self._build_pipeline(backends)
        web_stop = trio.Event()
        stopping_at = 0.0
        async with trio.open_nursery() as root:
            self.addresses = await root.start(serve_web, self._handles(backends), web_stop)
            try:
                with trio.CancelScope() as drain:
                    async with trio.open_nursery() as work:
                        await work.start(pipeline.serve, intake)
                        if await self._start_source(root, backends, intake, stop):
                            work.start_soon(
                                release_while_refused,
                                source,
                                pipeline.backend,
                                settings.release_after_s,
                                stop,
                            )
                        self._log_ready(backends)
                        task_status.started(self.addresses)
                        await stop.wait()
                        # Shutdown, in order: (1) no new records; the source closes
                        # the channel, (2) the workers drain it within the grace...
                        stopping_at = time.monotonic()
                        log.info("stopping: no new records; finishing in-flight work")
                        source.stop_intake()
                        drain.deadline = trio.current_time() + settings.shutdown_timeout_s
                if drain.cancelled_caught:
                    log.warning(
                        "shutdown timeout: %d records left uncommitted (re-read on restart)",
                        source.in_flight(),
                    )
            finally:
                # ... (3) commit what is settled and close the source, (4) end the
                # feed and the web server. Shielded: a crash or a cancellation
                # takes this path too.
                with trio.CancelScope(shield=True) as cleanup:
                    cleanup.deadline = trio.current_time() + CLOSE_TIMEOUT_S
                    await source.aclose()
                self.hub.close()
                web_stop.set()
        if stopping_at:
            log.info("stopped in %.1fs", time.monotonic() - stopping_at)

    async def _start_source(
        self,
        root: trio.Nursery,
        backends: Backends,
        intake: Intake,
        stop: trio.Event,
    ) -> bool:
        """Start the source once Redis and the broker answer; False if stopped first.

        The source runs in ``root`` because it outlives the drain: it returns after
        its final commit. When it never starts, the intake is closed here so
        that the pipeline drains and returns.
        """
        probes = {"kafka": backends.publisher.check}
        if not self.settings.redis_embedded:
            probes["redis"] = backends.limiter.check
        if await await_backends(probes, stop):
            delay = 0.5
            while not stop.is_set():
                try:
                    await root.start(backends.source.serve, intake)
                except BackendError as exc:
                    log.warning("source not ready, retrying in %.1fs: %s", delay, exc)
                    with trio.move_on_after(delay):
                        await stop.wait()
                    delay = min(RETRY_MAX_S, delay * 2)
                else:
                    self._source_ready = True
                    return True
        intake.close()
        return False

    def _log_ready(self, backends: Backends) -> None:
        log.info(
            "pushtrio %s ready on %s: %s, %d workers; %s",
            __version__,
            ", ".join(self.addresses),
            backends.describe(self.settings),
            self.settings.worker_count,
            "mock providers" if self.devices is None else self.devices.describe(),
        )

    def _open_log(self, path: str) -> BinaryIO | None:
        if not path:
            return None
        # Unbuffered appends: each line reaches the OS at once and survives a kill -9.
        return self._files.enter_context(open(path, "ab", buffering=0))

    def _breaker_changed(self, provider: str, state: BreakerState) -> None:
        self.hub.publish([BreakerEvent(provider, state.value)])

    def _token_pruned(self, user_id: str, device: Device) -> None:
        log.info("pruned a dead %s token of user %s", device.provider, user_id)
        self.metrics.record_pruned()
        self.hub.publish([TokenPrunedEvent(user_id, device.provider, device.token)])

    def _sinks(self) -> list[OutcomeSink]:
        """Where settled outcomes go, in order: the journal, metrics, the log, the feed."""
        sinks: list[OutcomeSink] = []
        journal = self._open_log(self.settings.outcome_log)
        if journal is not None:
            sinks.append(OutcomeJournal(journal).record)
        sinks += [self.metrics.record_outcomes, OutcomeLogger().record, self.hub.publish]
        return sinks

    def _build_pipeline(self, backends: Backends) -> Pipeline:
        settings, source = self.settings, backends.source
        self.metrics.bind_gauges(
            queue_size=self._queued, in_flight=source.in_flight, consumer_lag=source.lag
        )
        self.metrics.bind_lanes(
            settings.lanes,
            lambda: [] if self._intake is None else self._intake.queued(),
            source.unread,
        )
        self.pipeline = Pipeline(
            PipelineOptions(
                worker_count=settings.worker_count,
                batch_size=batch_size_for(settings.max_queue_size),
                max_in_flight=max(settings.worker_count, settings.max_queue_size),
                provider_timeout_s=self.budgets.provider_call_s,
                dlq_topic=settings.dlq_topic,
            ),
            limiter=backends.limiter,
            dedup=backends.dedup,
            providers=self.providers,
            scheduler=Scheduler(
                SchedulerOptions(
                    topics=delay_topics(settings),
                    defer=settings.rate_limit_policy == "defer",
                    defer_max_s=settings.defer_max_s,
                    max_park_s=settings.breaker_max_park_s,
                    probe_wait_s=self.budgets.probe_wait_s,
                )
            ),
            breakers=self.breakers,
            router=self.devices,
            dead_letters=backends.publisher,
            sinks=self._sinks(),
            step_sinks=[self.metrics.record_steps, self.hub.publish],
            settle=source.settle,
        )
        return self.pipeline

    def _queued(self) -> int:
        """Records waiting for a worker, as the intake counts them."""
        return 0 if self._intake is None else len(self._intake)

    def _handles(self, backends: Backends) -> AppHandles:
        return AppHandles(
            options=web_options(self.settings),
            metrics=self.metrics,
            hub=self.hub,
            limiter=backends.limiter,
            publisher=backends.publisher,
            health=self.health,
            replay=replayer_for(
                backends.publisher,
                self.settings.kafka_brokers,
                topic=self.settings.kafka_topic,
                dlq_topic=self.settings.dlq_topic,
            ),
            providers=self.providers,
            breakers=self.breakers,
            devices=backends.devices,
        )

    async def health(self) -> dict[str, Any]:
        """The /health document (see :func:`~pushtrio.service.health.health_document`)."""
        assert self.backends is not None
        settings = self.settings
        return await health_document(
            self.backends,
            source_ready=self._source_ready,
            redis_embedded=settings.redis_embedded,
            workers={
                "count": settings.worker_count,
                "in_flight": self.backends.source.in_flight(),
                "queue_size": self._queued(),
            },
            backend=None if self.pipeline is None else self.pipeline.backend,
            providers=self.providers,
            breakers=self.breakers,
        )
