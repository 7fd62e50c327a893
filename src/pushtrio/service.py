"""The service: the one place that wires the nursery tree.

    serve_service
    ├── pipeline (workers, deliveries, settler)   started first: it must be ready to take
    ├── web server (Hypercorn + Quart-Trio)
    └── source (Kafka reader thread or embedded queue)   started last

Shutdown (a stop event, set by SIGTERM/SIGINT): the source stops intake and closes
its channel; the pipeline drains what it holds within SHUTDOWN_TIMEOUT (what is not
finished then is cancelled and stays uncommitted); the source commits what is
settled and closes; the web server and the feed stop last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

import orjson
import trio

from . import __version__
from .backends import Backends, open_backends
from .config import Settings
from .errors import BackendError, BackendMisconfigured
from .events import EventHub
from .metrics import Metrics
from .model import Outcome
from .pipeline import Pipeline, PipelineOptions
from .providers import ProviderOptions, build_providers, provider_stats
from .records import Batch
from .web import AppHandles
from .web.server import serve_web

log = logging.getLogger(__name__)

SOURCE_RETRY_MAX_S = 10.0
PROBE_TIMEOUT_S = 15.0
"""Limit on one start-up probe of a backend (the broker's bootstrap takes up to 10 s)."""


class Service:
    """One running instance; ``await nursery.start(service.serve, stop)`` to run it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = EventHub()
        self._files: list[BinaryIO] = []
        self.providers = build_providers(
            ProviderOptions(
                success_rates=settings.provider_success_rates,
                latency_s=settings.provider_latency_s,
                seed=settings.provider_seed,
                journal=self._open_log(settings.mock_provider_journal),
            )
        )
        self._outcome_log = self._open_log(settings.outcome_log)
        self.metrics = Metrics(worker_count=settings.worker_count, providers=self.providers)
        self.backends: Backends | None = None
        self.pipeline: Pipeline | None = None
        self.addresses: list[str] = []
        self._source_ready = False

    async def serve(
        self,
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until ``stop`` is set, then shut down gracefully; returns when all is closed.

        Reports the web server's bound addresses once the source is reading.
        Raises OSError if the port cannot be bound. On cancellation everything
        stops at once and unsettled records stay uncommitted.
        """
        settings = self.settings
        for notice in settings.notices:
            log.warning("%s", notice)
        async with open_backends(settings) as backends:
            self.backends = backends
            pipeline = self._build_pipeline(backends)
            batch_send, batch_recv = trio.open_memory_channel[Batch](settings.max_queue_size)
            web_stop = trio.Event()
            async with trio.open_nursery() as root:
                pipeline_done = trio.Event()
                pipeline_scope = trio.CancelScope()
                root.start_soon(
                    self._run_pipeline, pipeline, batch_recv, pipeline_scope, pipeline_done
                )
                self.addresses = await root.start(serve_web, self._handles(backends), web_stop)
                if await self._await_backends(backends, stop):
                    await self._start_source(root, backends, batch_send, stop)
                    root.start_soon(self._release_while_misconfigured, backends, pipeline, stop)
                else:
                    await batch_send.aclose()
                log.info(
                    "pushtrio %s ready on %s: %s, %d workers",
                    __version__,
                    ", ".join(self.addresses),
                    backends.describe(settings),
                    settings.worker_count,
                )
                task_status.started(self.addresses)
                await stop.wait()
                await self._shut_down(backends, pipeline_scope, pipeline_done)
                self.hub.close()
                web_stop.set()
        for stream in self._files:
            stream.close()

    def _open_log(self, path: str) -> BinaryIO | None:
        if not path:
            return None
        # Unbuffered appends: each line reaches the OS at once and survives a kill -9.
        stream = open(path, "ab", buffering=0)  # noqa: SIM115 (closed in serve)
        self._files.append(stream)
        return stream

    def _journal(self, outcomes: Sequence[Outcome]) -> None:
        assert self._outcome_log is not None
        lines = []
        for outcome in outcomes:
            event = outcome.to_event()
            event["partition"] = outcome.partition
            event["offset"] = outcome.offset
            lines.append(orjson.dumps(event))
        self._outcome_log.write(b"\n".join(lines) + b"\n")

    async def _await_backends(self, backends: Backends, stop: trio.Event) -> bool:
        """Wait until Redis and the broker answer, before joining the consumer group.

        An instance that cannot work must not take partitions from the ones that
        can. Returns False if ``stop`` is set first. Raises BackendMisconfigured at
        once when a backend refuses us (wrong password...): retrying cannot help.
        """
        probes = {"kafka": backends.publisher.check}
        if not self.settings.redis_embedded:
            probes["redis"] = backends.limiter.check
        delay, attempt = 0.5, 0
        while True:
            failures = {}
            for name, probe in probes.items():
                try:
                    with trio.fail_after(PROBE_TIMEOUT_S):
                        await probe()
                except trio.TooSlowError:
                    failures[name] = f"no answer within {PROBE_TIMEOUT_S:.0f}s"
                except BackendMisconfigured:
                    raise
                except BackendError as exc:
                    failures[name] = str(exc)
            if not failures:
                return True
            attempt += 1
            for name, error in failures.items():
                log.warning(
                    "%s not answering at start-up (attempt %d; not joining the group yet), "
                    "retrying in %.1fs: %s",
                    name,
                    attempt,
                    delay,
                    error,
                )
            with trio.move_on_after(delay):
                await stop.wait()
            if stop.is_set():
                return False
            delay = min(SOURCE_RETRY_MAX_S, delay * 2)

    async def _release_while_misconfigured(
        self, backends: Backends, pipeline: Pipeline, stop: trio.Event
    ) -> None:
        """Leave the group while a backend keeps refusing us; join again once it accepts.

        The workers' own retries are the probe: the refusal is over when one of
        their calls succeeds. Returns once ``stop`` is set.
        """
        released = False
        while not stop.is_set():
            with trio.move_on_after(1.0):
                await stop.wait()
            since = pipeline.misconfigured_since
            refused_for = 0.0 if since is None else time.monotonic() - since
            if not released and refused_for >= self.settings.release_after_s:
                log.error(
                    "a backend has refused us for %.0fs (%s): leaving the consumer group",
                    refused_for,
                    pipeline.last_backend_error,
                )
                backends.source.release()
                released = True
            elif released and since is None:
                backends.source.rejoin()
                released = False

    async def _start_source(
        self,
        root: trio.Nursery,
        backends: Backends,
        batch_send: trio.MemorySendChannel[Batch],
        stop: trio.Event,
    ) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await root.start(backends.source.serve, batch_send)
            except BackendError as exc:
                log.warning("source not ready, retrying in %.1fs: %s", delay, exc)
                with trio.move_on_after(delay):
                    await stop.wait()
                delay = min(SOURCE_RETRY_MAX_S, delay * 2)
            else:
                self._source_ready = True
                return
        await batch_send.aclose()

    async def _run_pipeline(
        self,
        pipeline: Pipeline,
        batch_recv: trio.MemoryReceiveChannel[Batch],
        scope: trio.CancelScope,
        done: trio.Event,
    ) -> None:
        try:
            with scope:
                await pipeline.serve(batch_recv)
        finally:
            done.set()

    async def _shut_down(
        self, backends: Backends, pipeline_scope: trio.CancelScope, pipeline_done: trio.Event
    ) -> None:
        started = time.monotonic()
        log.info("stopping: no new records; finishing in-flight work")
        backends.source.stop_intake()
        with trio.move_on_after(self.settings.shutdown_timeout_s):
            await pipeline_done.wait()
        if not pipeline_done.is_set():
            left = backends.source.in_flight()
            log.warning("shutdown timeout: %d records left uncommitted (re-read on restart)", left)
            pipeline_scope.cancel()
            await pipeline_done.wait()
        with trio.move_on_after(10) as cleanup:
            cleanup.shield = True
            await backends.source.aclose()
        log.info("stopped in %.1fs", time.monotonic() - started)

    def _build_pipeline(self, backends: Backends) -> Pipeline:
        settings = self.settings
        source = backends.source
        self.metrics.bind_gauges(
            queue_size=source.queued, in_flight=source.in_flight, consumer_lag=source.lag
        )
        self.pipeline = Pipeline(
            PipelineOptions(
                worker_count=settings.worker_count,
                max_in_flight=max(settings.worker_count, settings.max_queue_size),
                retry_attempts=settings.retry_attempts,
                retry_delay_s=settings.retry_delay_s,
                provider_timeout_s=settings.provider_timeout_s,
                dlq_topic=settings.dlq_topic,
            ),
            limiter=backends.limiter,
            dedup=backends.dedup,
            providers=self.providers,
            dead_letters=backends.publisher,
            metrics=self.metrics,
            hub=self.hub,
            settle=source.settle,
            taken=source.taken,
            journal=None if self._outcome_log is None else self._journal,
        )
        return self.pipeline

    def _handles(self, backends: Backends) -> AppHandles:
        return AppHandles(
            settings=self.settings,
            metrics=self.metrics,
            hub=self.hub,
            limiter=backends.limiter,
            publisher=backends.publisher,
            health=self.health,
        )

    async def health(self) -> dict[str, Any]:
        """The /health document: one entry per component and an overall status."""
        backends = self.backends
        assert backends is not None
        source = dict(backends.source.health())
        source["healthy"] = bool(source.get("healthy")) and self._source_ready
        redis: dict[str, Any] = {"backend": "embedded" if self.settings.redis_embedded else "redis"}
        try:
            with trio.fail_after(2):
                await backends.limiter.check()
            redis["healthy"] = True
        except (BackendError, trio.TooSlowError) as exc:
            redis.update(healthy=False, error=str(exc) or "timeout")
        pipeline = self.pipeline
        workers = {
            "healthy": pipeline is not None and not pipeline.last_backend_error,
            "count": self.settings.worker_count,
            "in_flight": backends.source.in_flight(),
            "queue_size": backends.source.queued(),
            "error": None if pipeline is None else pipeline.last_backend_error or None,
        }
        stats = {name: provider_stats(p) for name, p in self.providers.items()}
        providers = {name: s.to_dict() for name, s in stats.items()}
        providers_ok = all(s.healthy for s in stats.values())
        components = {
            "kafka": source,
            "redis": redis,
            "workers": workers,
            "providers": {"healthy": providers_ok, **providers},
        }
        down = [name for name, c in components.items() if not c["healthy"]]
        status = "ok" if not down else ("down" if "kafka" in down else "degraded")
        return {
            "status": status,
            "mode": backends.source.mode,
            "version": __version__,
            "components": components,
        }
