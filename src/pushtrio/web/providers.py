"""``GET /providers`` and ``PATCH /providers/<name>``: the providers, and outages on demand.

``GET`` lists each provider with its counters, its circuit breaker (``state``,
``failure_rate``, ``retry_in_s``) and, for a mock provider, its simulation
(``success_rate``, ``latency_ms``, ``failure``). ``PATCH`` changes a mock provider's
simulation at run time, on this instance and in memory only, so that an
outage and a recovery can be shown without a restart::

    {"success_rate": 0.0, "latency_ms": 5, "failure": "transient"}

Every field is optional; unknown fields are refused. 400 ``{"error", "field"}`` for
a bad value, 404 for an unknown provider, 409 for one that is not a mock.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from quart import Response
from quart_schema import validate_response
from quart_trio import QuartTrio

from ..contract.api import BreakerView, MockView, ProviderChange, Providers, ProviderView
from ..pipeline.breaker import CircuitBreaker, breaker_document
from ..providers import Configurable, Provider, provider_stats
from . import AppHandles
from .responses import json_error
from .schema import answers, json_body


def provider_view(provider: Provider, breaker: CircuitBreaker | None) -> ProviderView:
    """One provider as ``GET /providers`` lists it."""
    view = ProviderView(stats=provider_stats(provider).to_dict())
    if breaker is not None:
        view.breaker = msgspec.convert(breaker_document(breaker), BreakerView)
    if isinstance(provider, Configurable):
        view.mock = msgspec.convert(provider.describe(), MockView)
    return view


def add_provider_routes(app: QuartTrio, handles: AppHandles) -> None:
    """Register the provider endpoints on ``app``, closing over ``handles``."""
    providers: Mapping[str, Provider] = handles.providers
    breakers = handles.breakers

    @app.get("/providers")
    @validate_response(Providers)
    async def list_providers() -> Providers:
        """The providers: counters, circuit breaker, and a mock's simulation"""
        return Providers(
            {name: provider_view(p, breakers.get(name)) for name, p in providers.items()}
        )

    @app.patch("/providers/<name>")
    @validate_response(ProviderView)
    @answers(400, "a field is malformed or unknown; field names it")
    @answers(404, "no such provider")
    @answers(409, "the provider is not a mock")
    @json_body(ProviderChange)
    async def change_provider(name: str, data: ProviderChange) -> ProviderView | Response:
        """Change a mock provider's simulation (this instance, in memory)"""
        provider = providers.get(name)
        if provider is None:
            return json_error(404, f"no provider {name} (known: {', '.join(providers)})")
        if not isinstance(provider, Configurable):
            return json_error(409, f"provider {name} is not a mock: nothing to simulate")
        latency_s = None if data.latency_ms is None else data.latency_ms / 1000
        provider.configure(
            success_rate=data.success_rate, latency_s=latency_s, failure=data.failure
        )
        return provider_view(provider, breakers.get(name))
