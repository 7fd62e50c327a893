"""The /health document: one entry per component and an overall status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from .. import __version__
from ..contract.errors import BackendError
from ..pipeline.breaker import BreakerState, CircuitBreaker
from ..providers import Provider, provider_stats
from .backends import Backends
from .guards import RefusalReport

REDIS_CHECK_TIMEOUT_S = 2.0


async def health_document(
    backends: Backends,
    *,
    source_ready: bool,
    redis_embedded: bool,
    workers: Mapping[str, Any],
    backend: RefusalReport | None,
    providers: Mapping[str, Provider],
    breakers: Mapping[str, CircuitBreaker],
) -> dict[str, Any]:
    """Ask each component; ``status`` is ok, degraded (a part is down) or down (Kafka is).

    ``workers`` carries the figures of the worker pool (count, queue, in flight);
    its health comes from the last error of the pipeline's ``backend`` calls (None
    before the pipeline exists).
    """
    source = dict(backends.source.health())
    source["healthy"] = bool(source.get("healthy")) and source_ready
    redis: dict[str, Any] = {"backend": "embedded" if redis_embedded else "redis"}
    try:
        with trio.fail_after(REDIS_CHECK_TIMEOUT_S):
            await backends.limiter.check()
        redis["healthy"] = True
    except (BackendError, trio.TooSlowError) as exc:
        redis.update(healthy=False, error=str(exc) or "timeout")
    error = None if backend is None else backend.last_backend_error or None
    stats = {name: provider_stats(p) for name, p in providers.items()}
    documents = {name: s.to_dict() for name, s in stats.items()}
    for name, breaker in breakers.items():
        if name in documents:
            # An open breaker is an outage: the provider's notifications are parked.
            state = breaker.state
            documents[name]["breaker"] = state.value
            documents[name]["healthy"] &= state is BreakerState.CLOSED
    components = {
        "kafka": source,
        "redis": redis,
        "workers": {"healthy": backend is not None and error is None, **workers, "error": error},
        "providers": {
            "healthy": all(d["healthy"] for d in documents.values()),
            **documents,
        },
    }
    down = [name for name, c in components.items() if not c["healthy"]]
    status = "ok" if not down else ("down" if "kafka" in down else "degraded")
    return {
        "status": status,
        "mode": backends.source.mode,
        "version": __version__,
        "components": components,
    }
