"""The HTTP and WebSocket face of the service (Quart-Trio served by Hypercorn).

The web layer never imports the pipeline or the sources: the service hands it an
:class:`AppHandles` with everything it may touch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..contract.lanes import DEFAULT_LANES, LaneTopics
from ..contract.records import Publisher
from ..pipeline.breaker import CircuitBreaker
from ..pipeline.replay import ReplayFilter, ReplayReport
from ..providers import Provider
from ..sinks.events import EventHub
from ..sinks.metrics import Metrics
from ..stores.devices import DeviceRegistry, MemoryDevices
from ..stores.limiter import Limiter


@dataclass(frozen=True, slots=True)
class WebOptions:
    """The plain values the web layer needs (the service derives them from its settings)."""

    host: str = "127.0.0.1"
    port: int = 8080
    """0 binds a free port; the bound address is reported by ``serve_web``."""
    lanes: LaneTopics = DEFAULT_LANES
    """Where ``POST /send`` publishes: the urgent topic for urgent priorities."""
    admin_token: str = ""
    """Bearer token for the admin endpoints; empty leaves them open."""


@dataclass(frozen=True, slots=True)
class AppHandles:
    """What the app may use: read-only figures, the feed, the limiter, the producer,
    the dead-letter replay."""

    options: WebOptions
    metrics: Metrics
    hub: EventHub
    limiter: Limiter
    publisher: Publisher
    health: Callable[[], Awaitable[dict[str, Any]]]
    """Returns the /health document; its ``status`` is ok, degraded or down."""
    replay: Callable[[ReplayFilter], Awaitable[ReplayReport]]
    """Writes the dead letters the filter takes back to the topic (``POST /dlq/replay``);
    raises BackendError when the broker cannot be read or written."""
    providers: Mapping[str, Provider]
    """Listed by ``GET /providers``; the mock ones can be changed by ``PATCH``."""
    breakers: Mapping[str, CircuitBreaker] = field(default_factory=dict)
    """Each provider's circuit breaker, listed by ``GET /providers``."""
    devices: DeviceRegistry = field(default_factory=MemoryDevices)
    """The device registry behind ``/users/{user_id}/devices``."""
