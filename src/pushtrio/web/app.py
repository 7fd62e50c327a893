"""The Quart-Trio application: admin endpoints, the live feed and the dashboard.

    GET    /                      dashboard page (public)
    GET    /health                component health (public)
    GET    /metrics               JSON figures
    GET    /metrics/prometheus    Prometheus text format
    GET    /ratelimit/<user_id>   a user's rate-limit status
    DELETE /ratelimit/<user_id>   clear it
    POST   /send                  write a notification to the topic
    POST   /dlq/replay            write dead letters back to the topic
    GET    /openapi.json          OpenAPI 3.1 description of the above
    WS     /ws/events             live outcomes

The app starts no task of its own: the service owns the nursery and hands the app
its :class:`~pushtrio.web.AppHandles`.
"""

from __future__ import annotations

from importlib.resources import files

from quart import Response
from quart_schema import security_scheme
from quart_trio import QuartTrio

from ..contract.notification import MAX_RECORD_BYTES
from . import AppHandles
from .admin import add_admin_routes
from .auth import install_auth
from .devices import add_device_routes
from .dlq import add_dlq_routes
from .early_close import install_early_close
from .feed import add_feed_route
from .providers import add_provider_routes
from .responses import install_error_handlers
from .schema import answers_raw, install_schema


def dashboard_html() -> bytes:
    """The dashboard page, shipped as package data."""
    return files(__package__).joinpath("static", "index.html").read_bytes()


def create_app(handles: AppHandles) -> QuartTrio:
    """Build the app around the service's handles (it starts no task of its own)."""
    app = QuartTrio("pushtrio", static_folder=None)
    # Quart refuses larger bodies itself (413), from Content-Length or as they stream in.
    app.config["MAX_CONTENT_LENGTH"] = MAX_RECORD_BYTES
    app.config["BODY_TIMEOUT"] = 30
    install_schema(app, secured=bool(handles.options.admin_token))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)
    install_auth(app, handles.options.admin_token)
    install_early_close(app)
    add_admin_routes(app, handles)
    add_dlq_routes(app, handles)
    add_provider_routes(app, handles)
    add_device_routes(app, handles.devices)
    add_feed_route(app, handles.hub)

    page = dashboard_html()

    @app.get("/")
    @security_scheme([])
    @answers_raw(200, "HTML", "text/html")
    async def dashboard() -> Response:
        """The dashboard (public)"""
        response = Response(page, content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    return app
