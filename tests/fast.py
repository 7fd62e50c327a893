"""Settings and records shared by the tests: a service that is fast and deterministic."""

from __future__ import annotations

from typing import Any

import orjson

from pushtrio.config import PROVIDER_NAMES, Settings


def fast_settings(**changes: Any) -> Settings:
    """A free port, instant providers that always succeed, short retry back-off."""
    base = Settings(
        port=0,
        provider_latency_s=0.0,
        provider_success_rates=tuple((name, 1.0) for name in PROVIDER_NAMES),
        retry_delay_s=0.01,
    )
    return base.replace(**changes)


def pipeline_settings(**changes: Any) -> Settings:
    """:func:`fast_settings` for whole-pipeline runs: seeded, 4 workers, a roomy limit."""
    base = fast_settings(
        provider_seed=1,
        rate_limit_per_user=1000,
        rate_limit_window_s=3600.0,
        shutdown_timeout_s=30.0,
        worker_count=4,
        max_queue_size=400,
    )
    return base.replace(**changes)


def note(message_id: str | None, user_id: str = "u1", **fields: Any) -> bytes:
    """A valid notification record; no ``id`` field when ``message_id`` is None."""
    document: dict[str, Any] = {"user_id": user_id, "title": "hello", **fields}
    if message_id is not None:
        document["id"] = message_id
    return orjson.dumps(document)
