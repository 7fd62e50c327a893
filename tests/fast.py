"""Settings shared by the tests: a service that is fast and deterministic."""

from __future__ import annotations

from typing import Any

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
