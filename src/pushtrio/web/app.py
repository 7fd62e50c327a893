"""The Quart-Trio application: admin endpoints and the live feed."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify
from quart_trio import QuartTrio

from . import AppHandles


def create_app(handles: AppHandles) -> QuartTrio:
    """Build the app around the service's handles (it starts no task of its own)."""
    app = QuartTrio("pushtrio")

    @app.get("/health")
    async def health() -> tuple[Response, int]:
        document: dict[str, Any] = await handles.health()
        return jsonify(document), 200 if document["status"] == "ok" else 503

    @app.get("/metrics")
    async def metrics() -> Response:
        return jsonify(handles.metrics.snapshot())

    return app
