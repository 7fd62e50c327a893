"""Push providers: one small interface (:mod:`.base`), mock twins for FCM, APNs and
Firebase, and real delivery to device tokens (:mod:`.devices` over the wire clients
of :mod:`.fcm` and :mod:`.apns`).

:func:`build_providers` (the mocks) and :func:`build_device_providers` (real
delivery, when credentials are set) are the factories the service calls; the choice
of implementation per provider lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from ..budgets import DEFAULT_BUDGETS, TimeBudgets
from ..stores.devices import Device
from .base import Configurable, Provider, ProviderStats, ReportsStats, provider_stats
from .fanout import DeviceDelivery, DeviceProvider, MockPushClient
from .mock import FAILURE_MIX, FAILURE_MODES, MockProvider, provider_seed
from .push import PushClient


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


@dataclass(frozen=True, slots=True)
class RealProviderOptions:
    """Credentials and endpoints of the real providers; empty files: the mock stays."""

    fcm_credentials_file: str = ""
    fcm_endpoint: str = "https://fcm.googleapis.com"
    apns_key_file: str = ""
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    apns_endpoint: str = "https://api.push.apple.com"
    apns_ca_file: str = ""
    budgets: TimeBudgets = DEFAULT_BUDGETS
    """Derived from PROVIDER_TIMEOUT: the wire clients' request timeout
    (``request_s``) and the deadline of one notification's pushes."""


def _wire_clients(options: RealProviderOptions) -> dict[str, PushClient]:
    """The real wire clients the options enable; ConfigError for unusable credentials."""
    from .apns import ApnsClient, load_apns_key
    from .fcm import FcmClient, load_service_account

    # Every credential is read first: one that cannot be used leaves no client open.
    account = (
        load_service_account(options.fcm_credentials_file) if options.fcm_credentials_file else None
    )
    apns_key = load_apns_key(options.apns_key_file) if options.apns_key_file else None
    timeout_s = options.budgets.request_s
    clients: dict[str, PushClient] = {}
    if account is not None:
        # One client (one OAuth token, one pool) for both names of FCM HTTP v1.
        fcm = FcmClient("fcm", account, endpoint=options.fcm_endpoint, timeout_s=timeout_s)
        clients["fcm"] = clients["firebase"] = fcm
    if apns_key is not None:
        clients["apns"] = ApnsClient(
            apns_key,
            options.apns_key_id,
            options.apns_team_id,
            options.apns_topic,
            endpoint=options.apns_endpoint,
            ca_file=options.apns_ca_file or None,
            timeout_s=timeout_s,
        )
    return clients


def build_device_providers(
    mocks: Mapping[str, Provider],
    options: RealProviderOptions,
    on_pruned: Callable[[str, Device], None],
) -> tuple[dict[str, Provider], DeviceDelivery]:
    """Every provider delivering to device tokens: real where ``options`` give
    credentials, the mock of ``mocks`` otherwise. Raises ConfigError for a credential
    file that cannot be used."""
    clients = _wire_clients(options)
    for name, mock in mocks.items():
        if name not in clients and isinstance(mock, MockProvider):
            clients[name] = MockPushClient(mock)
    delivery = DeviceDelivery(clients, on_pruned, deadline_s=options.budgets.device_deadline_s)
    providers: dict[str, Provider] = {name: DeviceProvider(name, delivery) for name in mocks}
    return providers, delivery


__all__ = [
    "FAILURE_MIX",
    "FAILURE_MODES",
    "Configurable",
    "DeviceDelivery",
    "MockProvider",
    "Provider",
    "ProviderOptions",
    "ProviderStats",
    "RealProviderOptions",
    "ReportsStats",
    "build_device_providers",
    "build_providers",
    "provider_seed",
    "provider_stats",
]
