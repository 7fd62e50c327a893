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

from collections.abc import Callable, Mapping
from typing import Any, Final

from quart import Response, jsonify
from quart_trio import QuartTrio

from ..pipeline.breaker import CircuitBreaker, breaker_document
from ..providers import FAILURE_MODES, Configurable, Provider, provider_stats
from . import AppHandles
from .bodies import read_json_body
from .responses import json_error

MAX_LATENCY_MS: Final = 60_000.0


def provider_document(provider: Provider, breaker: CircuitBreaker | None) -> dict[str, Any]:
    """One provider as ``GET /providers`` lists it."""
    document: dict[str, Any] = {"stats": provider_stats(provider).to_dict()}
    if breaker is not None:
        document["breaker"] = breaker_document(breaker)
    if isinstance(provider, Configurable):
        document["mock"] = provider.describe()
    return document


def _number(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:g} to {high:g}")
    return float(value)


def _failure(value: object) -> str:
    if value not in FAILURE_MODES:
        raise ValueError(f"failure must be one of {', '.join(FAILURE_MODES)}")
    return str(value)


_FIELDS: Final[dict[str, Callable[[object], Any]]] = {
    "success_rate": lambda v: _number(v, "success_rate", 0.0, 1.0),
    "latency_ms": lambda v: _number(v, "latency_ms", 0.0, MAX_LATENCY_MS),
    "failure": _failure,
}


def simulation_changes(document: object) -> dict[str, Any] | Response:
    """The ``configure`` arguments a PATCH body asks for, or the 400 answer to give."""
    if not isinstance(document, dict):
        return json_error(400, "the body must be a JSON object", field=None)
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        expected = ", ".join(_FIELDS)
        message = f"unknown field {unknown[0]} (expected {expected})"
        return json_error(400, message, field=unknown[0])
    changes: dict[str, Any] = {}
    for name, parse in _FIELDS.items():
        if document.get(name) is None:
            continue
        try:
            changes[name] = parse(document[name])
        except ValueError as exc:
            return json_error(400, str(exc), field=name)
    if "latency_ms" in changes:
        changes["latency_s"] = changes.pop("latency_ms") / 1000
    return changes


def add_provider_routes(app: QuartTrio, handles: AppHandles) -> None:
    """Register the provider endpoints on ``app``, closing over ``handles``."""
    providers: Mapping[str, Provider] = handles.providers
    breakers = handles.breakers

    @app.get("/providers")
    async def list_providers() -> Response:
        return jsonify(
            {
                "providers": {
                    name: provider_document(p, breakers.get(name)) for name, p in providers.items()
                }
            }
        )

    @app.patch("/providers/<name>")
    async def change_provider(name: str) -> Response:
        provider = providers.get(name)
        if provider is None:
            return json_error(404, f"no provider {name} (known: {', '.join(providers)})")
        document = await read_json_body()
        if isinstance(document, Response):
            return document
        changes = simulation_changes(document)
        if isinstance(changes, Response):
            return changes
        if not isinstance(provider, Configurable):
            return json_error(409, f"provider {name} is not a mock: nothing to simulate")
        provider.configure(**changes)
        return jsonify(provider_document(provider, breakers.get(name)))
