"""Delivery to devices: from "notify user u" to one push per registered token.

With a real provider configured (FCM or APNs credentials), each provider name is a
:class:`DeviceProvider`. For a batch it finds the targets of every notification:

- the ``tokens`` the message names (for the provider it names), or else
- the user's registered devices of the provider it names, or of every provider when
  it names none (one registry round trip for the whole batch);

then pushes through each target's wire client (:mod:`.push`) concurrently and folds
the answers into one result per notification: delivered when at least one device
accepted it (with the counts), else a transient failure when a device may still take
it later, else a permanent one. A token the provider calls dead is removed from the
registry at once and announced (``token_pruned``). A user with no device fails for
good, reason ``no registered device``.

A device of a provider with no credentials is served by that provider's mock, so a
half-configured service (APNs keys, no FCM file) still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import msgspec
import trio

from ..budgets import DEFAULT_BUDGETS
from ..contract.errors import (
    BackendError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from ..contract.notification import Notification
from ..contract.outcome import DeviceCounts
from ..stores.devices import Device, DeviceRegistry
from .base import Counters, ProviderStats
from .mock import MockProvider
from .push import PushClient, TokenResult, TokenState

log = logging.getLogger(__name__)

NO_DEVICE = "no registered device"


class MockPushClient:
    """A mock provider behind the wire-client interface: every token gets the answer
    the mock draws for the notification."""

    def __init__(self, mock: MockProvider) -> None:
        self.name = mock.name
        self._mock = mock

    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        [result] = await self._mock.send_many([notification], attempt)
        if not isinstance(result, ProviderError):
            return [TokenResult(t, TokenState.ACCEPTED) for t in tokens]
        state = (
            TokenState.PERMANENT
            if isinstance(result, PermanentProviderError)
            else TokenState.TRANSIENT
        )
        return [TokenResult(t, state, result.reason) for t in tokens]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class DeviceDelivery:
    """What the device providers share: the wire clients, the registry, the announcer.

    ``registry`` is bound by the service once its backends are open (the Redis
    registry needs the connection).
    """

    def __init__(
        self,
        clients: Mapping[str, PushClient],
        on_pruned: Callable[[str, Device], None],
        *,
        deadline_s: float = DEFAULT_BUDGETS.device_deadline_s,
    ) -> None:
        self.clients = dict(clients)
        self.deadline_s = deadline_s
        """How long one notification's pushes may take: tokens unanswered by then are
        transient failures, and those that did answer keep their answers (set below
        the pipeline's PROVIDER_TIMEOUT, which would throw every answer away)."""
        self.registry: DeviceRegistry | None = None
        self._on_pruned = on_pruned
        self.pruned = 0
        """Dead tokens removed, since start."""

    def describe(self) -> str:
        """Which provider is real and which a mock, for the start-up line."""
        kinds = {
            name: "mock" if isinstance(client, MockPushClient) else "real"
            for name, client in self.clients.items()
        }
        return "providers to devices: " + ", ".join(f"{n} {k}" for n, k in kinds.items())

    async def targets(self, notifications: Sequence[Notification]) -> list[list[Device]]:
        """Per notification, the devices to push to (raises BackendError)."""
        users = [n.user_id for n in notifications if not n.tokens]
        registered: dict[str, list[Device]] = {}
        if users:
            if self.registry is None:
                raise BackendError("the device registry is not open yet")
            registered = await self.registry.devices_many(users)
        targets: list[list[Device]] = []
        for notification in notifications:
            if notification.tokens:
                targets.append([Device(notification.provider, t) for t in notification.tokens])
            else:
                targets.append(
                    [
                        device
                        for device in registered.get(notification.user_id, [])
                        if notification.any_provider
                        or service_of(device.provider) == service_of(notification.provider)
                    ]
                )
        return targets

    async def route(self, notifications: Sequence[Notification]) -> list[Notification]:
        """Give each notification that names no provider (nor tokens) a provider whose
        devices its user has, so that it is gated and counted by that provider's
        breaker; the one chosen from its user id when the user has it too, or none.
        Raises BackendError when the registry fails."""
        open_ended = [n for n in notifications if n.any_provider and not n.tokens]
        if not open_ended:
            await trio.lowlevel.checkpoint()
            return list(notifications)
        if self.registry is None:
            raise BackendError("the device registry is not open yet")
        registered = await self.registry.devices_many([n.user_id for n in open_ended])
        asked = {id(n) for n in open_ended}
        routed = []
        for notification in notifications:
            devices = registered.get(notification.user_id) if id(notification) in asked else None
            names = sorted({d.provider for d in devices or ()})
            if names and notification.provider not in names:
                notification = msgspec.structs.replace(notification, provider=names[0])
            routed.append(notification)
        return routed

    async def prune(self, user_id: str, device: Device) -> bool:
        """Forget a dead token and announce it; False if the registry could not be told."""
        if self.registry is not None:
            try:
                await self.registry.remove(user_id, device.token)
            except BackendError as exc:
                log.warning(
                    "could not prune a dead %s token of %s: %s", device.provider, user_id, exc
                )
                return False
        self.pruned += 1
        self._on_pruned(user_id, device)
        return True

    async def aclose(self) -> None:
        for client in {id(c): c for c in self.clients.values()}.values():
            await client.aclose()


class DeviceProvider:
    """Provider ``name`` delivering to device tokens (see the module text)."""

    def __init__(self, name: str, delivery: DeviceDelivery) -> None:
        self.name = name
        self._delivery = delivery
        self._counters = Counters()

    def stats(self) -> ProviderStats:
        """Per notification: delivered to a device, or failed (and how)."""
        return self._counters.snapshot(self.name)

    def _count(self, result: ProviderError | DeviceCounts) -> None:
        if isinstance(result, DeviceCounts):
            self._counters.ok()
        elif result.reason != NO_DEVICE:  # the user's doing, not the provider's
            self._counters.failed(permanent=isinstance(result, PermanentProviderError))

    async def send(self, notification: Notification, attempt: int) -> None:
        [result] = await self.send_many([notification], attempt)
        if isinstance(result, ProviderError):
            raise result

    async def send_many(
        self, notifications: Sequence[Notification], attempt: int
    ) -> list[ProviderError | DeviceCounts | None]:
        try:
            targets = await self._delivery.targets(notifications)
        except BackendError as exc:
            error = TransientProviderError(self.name, f"device registry: {exc}")
            return [error] * len(notifications)
        results: list[ProviderError | DeviceCounts | None] = [None] * len(notifications)

        async def one(i: int, notification: Notification, devices: list[Device]) -> None:
            result = results[i] = await self._deliver(notification, devices, attempt)
            self._count(result)

        async with trio.open_nursery() as nursery:
            for i, (notification, devices) in enumerate(zip(notifications, targets, strict=True)):
                nursery.start_soon(one, i, notification, devices)
        return results

    async def _deliver(
        self, notification: Notification, devices: list[Device], attempt: int
    ) -> ProviderError | DeviceCounts:
        if not devices:
            return PermanentProviderError(self.name, NO_DEVICE, devices=DeviceCounts())
        answers: list[tuple[Device, TokenResult]] = []

        async def push(provider: str, group: list[Device]) -> None:
            client = self._delivery.clients[provider]
            tokens = [d.token for d in group]
            try:
                pushed = await client.push(notification, tokens, attempt=attempt)
            except Exception as exc:  # a client's bug must not fail the notification for good
                log.exception("%s client failed", provider)
                pushed = [
                    TokenResult(t, TokenState.TRANSIENT, f"internal error: {exc!r}") for t in tokens
                ]
            answers.extend(zip(group, pushed, strict=True))

        by_provider: dict[str, list[Device]] = {}
        for device in devices:
            if device.provider in self._delivery.clients:
                by_provider.setdefault(device.provider, []).append(device)
        with trio.move_on_after(self._delivery.deadline_s):
            async with trio.open_nursery() as nursery:
                for provider, group in by_provider.items():
                    nursery.start_soon(push, provider, group)
        answered = {id(device) for device, _ in answers}
        answers += [
            (d, TokenResult(d.token, TokenState.TRANSIENT, "timeout"))
            for group in by_provider.values()
            for d in group
            if id(d) not in answered
        ]
        return await self._fold(notification, answers)

    async def _fold(
        self, notification: Notification, answers: list[tuple[Device, TokenResult]]
    ) -> ProviderError | DeviceCounts:
        accepted = failed = pruned = 0
        transient: list[TokenResult] = []
        reasons: list[str] = []
        for device, answer in answers:
            if answer.state is TokenState.ACCEPTED:
                accepted += 1
                continue
            reasons.append(answer.reason or answer.state.value)
            if answer.state is TokenState.DEAD and await self._delivery.prune(
                notification.user_id, device
            ):
                pruned += 1
                continue
            failed += 1
            if answer.state is TokenState.TRANSIENT:
                transient.append(answer)
        counts = DeviceCounts(accepted, failed, pruned)
        if accepted:
            return counts
        if not answers:
            return PermanentProviderError(self.name, NO_DEVICE, devices=counts)
        reason = _reason(reasons)
        if transient:
            waits = [a.retry_after_s for a in transient if a.retry_after_s is not None]
            return TransientProviderError(
                self.name, reason, devices=counts, retry_after_s=max(waits) if waits else None
            )
        return PermanentProviderError(self.name, reason, devices=counts)


_SERVICES = {"firebase": "fcm"}
"""Provider names that are one service: ``firebase`` and ``fcm`` are both FCM HTTP v1."""


def service_of(provider: str) -> str:
    """The service behind a provider name (devices of ``fcm`` serve ``firebase`` too)."""
    return _SERVICES.get(provider, provider)


def _reason(reasons: list[str]) -> str:
    """One line for the failures of every device: ``Unregistered`` or ``2 devices: ...``."""
    if len(reasons) == 1:
        return reasons[0]
    return f"{len(reasons)} devices: {', '.join(sorted(set(reasons)))}"
