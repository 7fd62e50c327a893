"""Serve the app with Hypercorn inside the service's nursery."""

from __future__ import annotations

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from . import AppHandles
from .app import create_app


async def serve_web(
    handles: AppHandles,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app on HOST:PORT until ``shutdown`` is set.

    Reports the bound addresses (``http://host:port``) once listening; with PORT=0
    the real port is in them. Raises OSError when the address cannot be bound.
    On cancellation the server stops at once.
    """
    settings = handles.settings
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 2.0
    app = create_app(handles)
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
