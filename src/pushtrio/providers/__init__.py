"""Push providers: one small interface (:mod:`.base`), mock twins for FCM, APNs and Firebase.

:func:`build_providers` is the one factory the service calls; it is where the choice
of implementation per provider lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from .base import Configurable, Provider, ProviderStats, ReportsStats, provider_stats
from .mock import FAILURE_MIX, FAILURE_MODES, MockProvider, provider_seed


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    """What the providers are built from (the service derives it from its settings)."""

    success_rates: tuple[tuple[str, float], ...]
    """Provider names, in order, with the mock's probability of success."""
    latency_s: float = 0.05
    seed: int | None = None
    journal: BinaryIO | None = None
    """An unbuffered binary file that gets a line per accepted notification."""


def build_providers(options: ProviderOptions) -> dict[str, Provider]:
    """One provider per configured name, keyed by name (today: a :class:`MockProvider` each)."""
    return {
        name: MockProvider(
            name,
            success_rate=rate,
            latency_s=options.latency_s,
            seed=provider_seed(options.seed, name),
            journal=options.journal,
        )
        for name, rate in options.success_rates
    }


__all__ = [
    "FAILURE_MIX",
    "FAILURE_MODES",
    "Configurable",
    "MockProvider",
    "Provider",
    "ProviderOptions",
    "ProviderStats",
    "ReportsStats",
    "build_providers",
    "provider_seed",
    "provider_stats",
]
