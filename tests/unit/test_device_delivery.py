"""Delivery to device tokens: targets, folding per-token answers, pruning dead tokens.

DeviceProvider runs over the in-memory registry and scripted wire clients (one per
provider name) that answer each token as told and record every push they get.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from pushtrio.contract.errors import BackendError, PermanentProviderError, TransientProviderError
from pushtrio.contract.notification import Notification
from pushtrio.contract.outcome import DeviceCounts
from pushtrio.providers import Provider, ProviderOptions, build_providers
from pushtrio.providers.fanout import NO_DEVICE, DeviceDelivery, DeviceProvider, MockPushClient
from pushtrio.providers.mock import FAILURE_MIX, MockProvider
from pushtrio.providers.push import PushClient, TokenResult, TokenState
from pushtrio.sinks.events import TokenPrunedEvent
from pushtrio.stores.devices import Device, MemoryDevices

from ..fast import note
from . import test_pipeline as pipeline_tests

NAMES = ("fcm", "apns", "firebase")
PERMANENT_REASONS = {reason for reason, permanent, _ in FAILURE_MIX if permanent}
TRANSIENT_REASONS = {reason for reason, permanent, _ in FAILURE_MIX if not permanent}


class ScriptedClient:
    """A wire client answering each token from its script (accepted when unscripted)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.script: dict[str, TokenResult] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        """(notification id, tokens) of every push, in order."""

    def answer(
        self, token: str, state: TokenState, reason: str = "", retry_after_s: float | None = None
    ) -> None:
        self.script[token] = TokenResult(token, state, reason, retry_after_s)

    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        await trio.lowlevel.checkpoint()
        self.calls.append((notification.id, tuple(tokens)))
        return [self.script.get(t, TokenResult(t, TokenState.ACCEPTED)) for t in tokens]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class CountingDevices(MemoryDevices):
    """The memory registry, counting devices_many round trips; failing on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[list[str]] = []
        self.fail_lookups = False
        self.fail_removes = False

    async def devices_many(self, user_ids: Sequence[str]) -> dict[str, list[Device]]:
        self.lookups.append(list(user_ids))
        if self.fail_lookups:
            await trio.lowlevel.checkpoint()
            raise BackendError("redis: ConnectionError: refused")
        return await super().devices_many(user_ids)

    async def remove(self, user_id: str, token: str) -> bool:
        if self.fail_removes:
            await trio.lowlevel.checkpoint()
            raise BackendError("redis: TimeoutError: timed out")
        return await super().remove(user_id, token)


class Setup:
    def __init__(self) -> None:
        self.clients = {name: ScriptedClient(name) for name in NAMES}
        self.registry = CountingDevices()
        self.pruned: list[TokenPrunedEvent] = []
        self.delivery = DeviceDelivery(
            self.clients,
            lambda user, device: self.pruned.append(
                TokenPrunedEvent(user, device.provider, device.token)
            ),
        )
        self.delivery.registry = self.registry
        self.providers = {name: DeviceProvider(name, self.delivery) for name in NAMES}

    async def register(self, user_id: str, *devices: tuple[str, str]) -> None:
        for provider, token in devices:
            assert await self.registry.put(user_id, Device(provider, token))

    def calls(self) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
        """Every client's pushes, for the clients that got any."""
        return {name: client.calls for name, client in self.clients.items() if client.calls}

    def pruned_triples(self) -> list[tuple[str, str, str]]:
        return [(e.user_id, e.provider, e.token) for e in self.pruned]


@pytest.fixture
def setup() -> Setup:
    return Setup()


def notification(
    message_id: str = "n1",
    user_id: str = "u1",
    provider: str = "fcm",
    *,
    tokens: tuple[str, ...] = (),
    any_provider: bool = False,
) -> Notification:
    return Notification(
        id=message_id,
        user_id=user_id,
        title="hi",
        provider=provider,
        tokens=tokens,
        any_provider=any_provider,
    )


async def test_explicit_tokens_go_only_to_the_named_providers_client(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "registered-f"), ("apns", "registered-a"))
    result = await setup.providers["apns"].send_many(
        [notification(provider="apns", tokens=("t1", "t2"))], 1
    )
    assert result == [DeviceCounts(accepted=2, failed=0, pruned=0)]
    assert setup.calls() == {"apns": [("n1", ("t1", "t2"))]}
    assert setup.registry.lookups == []  # named tokens need no registry round trip


async def test_explicit_tokens_need_no_registry_even_when_it_is_down(setup: Setup) -> None:
    setup.registry.fail_lookups = True
    [result] = await setup.providers["fcm"].send_many([notification(tokens=("t1",))], 1)
    assert result == DeviceCounts(accepted=1)


async def test_a_named_provider_reaches_only_its_own_registered_devices(setup: Setup) -> None:
    """fcm and firebase are one service (FCM HTTP v1); apns is another."""
    await setup.register("u1", ("fcm", "b"), ("fcm", "a"), ("apns", "c"), ("firebase", "d"))
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert result == DeviceCounts(accepted=3)
    assert setup.calls() == {"fcm": [("n1", ("a", "b"))], "firebase": [("n1", ("d",))]}
    [result] = await setup.providers["apns"].send_many([notification("n2", provider="apns")], 1)
    assert result == DeviceCounts(accepted=1)
    assert setup.clients["apns"].calls == [("n2", ("c",))]


async def test_any_provider_reaches_every_device_split_per_provider_client(setup: Setup) -> None:
    await setup.register(
        "u1", ("fcm", "f1"), ("apns", "a1"), ("firebase", "x1"), ("apns", "a2"), ("fcm", "f2")
    )
    [result] = await setup.providers["fcm"].send_many([notification(any_provider=True)], 1)
    assert result == DeviceCounts(accepted=5)
    assert setup.calls() == {
        "fcm": [("n1", ("f1", "f2"))],
        "apns": [("n1", ("a1", "a2"))],
        "firebase": [("n1", ("x1",))],
    }


async def test_a_batch_reads_the_registry_once_and_keeps_results_in_order(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "u1-phone"))
    await setup.register("u2", ("fcm", "u2-phone"), ("fcm", "u2-tablet"))
    batch = [
        notification("m1", "u1"),
        notification("m2", "u2"),
        notification("m3", "u3"),
        notification("m4", "u4", tokens=("named",)),
    ]
    results = await setup.providers["fcm"].send_many(batch, 1)
    assert results[:2] == [DeviceCounts(accepted=1), DeviceCounts(accepted=2)]
    assert isinstance(results[2], PermanentProviderError)
    assert results[2].reason == NO_DEVICE
    assert results[3] == DeviceCounts(accepted=1)
    assert setup.registry.lookups == [["u1", "u2", "u3"]]
    assert sorted(setup.clients["fcm"].calls) == [
        ("m1", ("u1-phone",)),
        ("m2", ("u2-phone", "u2-tablet")),
        ("m4", ("named",)),
    ]


async def test_one_accepted_device_delivers_with_exact_counts(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "ok"), ("fcm", "dead"), ("fcm", "bad"), ("fcm", "busy"))
    fcm = setup.clients["fcm"]
    fcm.answer("dead", TokenState.DEAD, "UNREGISTERED")
    fcm.answer("bad", TokenState.PERMANENT, "INVALID_ARGUMENT")
    fcm.answer("busy", TokenState.TRANSIENT, "UNAVAILABLE", retry_after_s=30.0)
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert result == DeviceCounts(accepted=1, failed=2, pruned=1)
    assert [d.token for d in await setup.registry.devices("u1")] == ["bad", "busy", "ok"]
    assert setup.pruned_triples() == [("u1", "fcm", "dead")]
    assert setup.delivery.pruned == 1


async def test_every_device_dead_fails_for_good_and_prunes_each_once(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "f-dead"), ("apns", "a-dead"), ("apns", "a-gone"))
    await setup.register("u2", ("apns", "kept"))
    setup.clients["fcm"].answer("f-dead", TokenState.DEAD, "UNREGISTERED")
    setup.clients["apns"].answer("a-dead", TokenState.DEAD, "Unregistered")
    setup.clients["apns"].answer("a-gone", TokenState.DEAD, "BadDeviceToken")
    [result] = await setup.providers["apns"].send_many([notification(any_provider=True)], 1)
    assert isinstance(result, PermanentProviderError)
    assert result.provider == "apns"
    assert result.devices == DeviceCounts(accepted=0, failed=0, pruned=3)
    assert result.reason == "3 devices: BadDeviceToken, UNREGISTERED, Unregistered"
    assert await setup.registry.devices("u1") == []
    assert await setup.registry.devices("u2") == [Device("apns", "kept")]
    assert sorted(setup.pruned_triples()) == [
        ("u1", "apns", "a-dead"),
        ("u1", "apns", "a-gone"),
        ("u1", "fcm", "f-dead"),
    ]
    assert all(event.to_event()["event"] == "token_pruned" for event in setup.pruned)
    assert setup.delivery.pruned == 3


async def test_one_dead_device_reports_the_providers_word_as_the_reason(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "dead"))
    setup.clients["fcm"].answer("dead", TokenState.DEAD, "UNREGISTERED")
    with pytest.raises(PermanentProviderError) as caught:
        await setup.providers["fcm"].send(notification(), 1)
    assert caught.value.reason == "UNREGISTERED"
    assert caught.value.devices == DeviceCounts(pruned=1)


async def test_transient_and_dead_retries_with_the_longest_retry_after(setup: Setup) -> None:
    await setup.register(
        "u1", ("fcm", "slow"), ("fcm", "slower"), ("fcm", "no-hint"), ("fcm", "dead")
    )
    fcm = setup.clients["fcm"]
    fcm.answer("slow", TokenState.TRANSIENT, "QUOTA_EXCEEDED", retry_after_s=3.0)
    fcm.answer("slower", TokenState.TRANSIENT, "UNAVAILABLE", retry_after_s=7.5)
    fcm.answer("no-hint", TokenState.TRANSIENT, "timeout")
    fcm.answer("dead", TokenState.DEAD, "UNREGISTERED")
    [result] = await setup.providers["fcm"].send_many([notification()], 2)
    assert isinstance(result, TransientProviderError)
    assert result.devices == DeviceCounts(accepted=0, failed=3, pruned=1)
    assert result.retry_after_s == 7.5
    assert result.reason == "4 devices: QUOTA_EXCEEDED, UNAVAILABLE, UNREGISTERED, timeout"
    assert setup.pruned_triples() == [("u1", "fcm", "dead")]


async def test_transient_without_retry_after_has_none(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "a"), ("fcm", "b"))
    setup.clients["fcm"].answer("a", TokenState.TRANSIENT, "timeout")
    setup.clients["fcm"].answer("b", TokenState.PERMANENT, "INVALID_ARGUMENT")
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert isinstance(result, TransientProviderError)
    assert result.retry_after_s is None
    assert result.devices == DeviceCounts(failed=2)


async def test_only_permanent_answers_fail_for_good_without_pruning(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "a"))
    setup.clients["fcm"].answer("a", TokenState.PERMANENT, "INVALID_ARGUMENT")
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert isinstance(result, PermanentProviderError)
    assert (result.reason, result.devices) == ("INVALID_ARGUMENT", DeviceCounts(failed=1))
    assert await setup.registry.devices("u1") == [Device("fcm", "a")]
    assert setup.pruned == []


@pytest.mark.parametrize(
    "registered",
    [
        [],  # no device at all
        [("apns", "a1")],  # devices, but none of the provider named
    ],
)
async def test_no_device_to_reach_fails_for_good(
    setup: Setup, registered: list[tuple[str, str]]
) -> None:
    await setup.register("u1", *registered)
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert isinstance(result, PermanentProviderError)
    assert result.reason == NO_DEVICE == "no registered device"
    assert result.devices == DeviceCounts()
    assert setup.calls() == {}


async def test_devices_of_a_provider_without_a_client_are_no_device(setup: Setup) -> None:
    del setup.clients["firebase"]
    setup.delivery.clients.pop("firebase")
    await setup.register("u1", ("firebase", "x1"))
    [result] = await setup.providers["fcm"].send_many([notification(any_provider=True)], 1)
    assert isinstance(result, PermanentProviderError)
    assert result.reason == NO_DEVICE


async def test_a_registry_failure_fails_the_whole_batch_transiently(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "a"))
    setup.registry.fail_lookups = True
    results = await setup.providers["fcm"].send_many(
        [notification("m1"), notification("m2", "u2")], 1
    )
    assert len(results) == 2
    for result in results:
        assert isinstance(result, TransientProviderError)
        assert result.provider == "fcm"
        assert result.reason.startswith("device registry: ")
        assert "refused" in result.reason
    assert setup.calls() == {}


async def test_a_registry_not_yet_bound_fails_transiently(setup: Setup) -> None:
    setup.delivery.registry = None
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert isinstance(result, TransientProviderError)
    assert "not open" in result.reason


async def test_a_failed_prune_counts_the_token_failed_and_announces_nothing(
    setup: Setup,
) -> None:
    await setup.register("u1", ("fcm", "dead"), ("fcm", "ok"))
    setup.clients["fcm"].answer("dead", TokenState.DEAD, "UNREGISTERED")
    setup.registry.fail_removes = True
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert result == DeviceCounts(accepted=1, failed=1, pruned=0)
    assert setup.pruned == []
    assert setup.delivery.pruned == 0
    assert [d.token for d in await setup.registry.devices("u1")] == ["dead", "ok"]


async def test_a_failed_prune_of_the_only_device_is_a_permanent_failure(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "dead"))
    setup.clients["fcm"].answer("dead", TokenState.DEAD, "UNREGISTERED")
    setup.registry.fail_removes = True
    [result] = await setup.providers["fcm"].send_many([notification()], 1)
    assert isinstance(result, PermanentProviderError)
    assert result.devices == DeviceCounts(failed=1)
    assert setup.pruned == []


async def test_send_returns_on_delivery(setup: Setup) -> None:
    await setup.register("u1", ("fcm", "a"))
    await setup.providers["fcm"].send(notification(), 1)
    assert setup.calls() == {"fcm": [("n1", ("a",))]}


def mock(success_rate: float, failure: str = "mixed") -> MockProvider:
    provider = MockProvider("apns", success_rate=success_rate, latency_s=0.0, seed=3)
    provider.configure(failure=failure)
    return provider


async def test_mock_push_client_accepts_every_token_when_the_mock_succeeds() -> None:
    client = MockPushClient(mock(1.0))
    results = await client.push(notification(provider="apns"), ["t1", "t2"])
    assert client.name == "apns"
    assert results == [
        TokenResult("t1", TokenState.ACCEPTED),
        TokenResult("t2", TokenState.ACCEPTED),
    ]


@pytest.mark.parametrize(
    ("failure", "state", "reasons"),
    [
        ("permanent", TokenState.PERMANENT, PERMANENT_REASONS),
        ("transient", TokenState.TRANSIENT, TRANSIENT_REASONS),
    ],
)
async def test_mock_push_client_maps_the_mocks_failures(
    failure: str, state: TokenState, reasons: set[str]
) -> None:
    client = MockPushClient(mock(0.0, failure))
    for i in range(20):
        results = await client.push(notification(f"m{i}", provider="apns"), ["t1", "t2"])
        assert [r.token for r in results] == ["t1", "t2"]
        assert {r.state for r in results} == {state}
        assert results[0].reason == results[1].reason  # one draw per notification
        assert results[0].reason in reasons


async def test_a_seeded_mock_behind_a_device_provider_draws_per_attempt() -> None:
    seeded = MockProvider("fcm", success_rate=0.5, latency_s=0.0, seed=1)
    plain = MockProvider("fcm", success_rate=0.5, latency_s=0.0, seed=1)
    delivery = DeviceDelivery({"fcm": MockPushClient(seeded)}, lambda user, device: None)
    delivery.registry = MemoryDevices()
    await delivery.registry.put("u1", Device("fcm", "phone"))
    provider = DeviceProvider("fcm", delivery)
    for i in range(10):
        message = notification(f"m{i}")
        for attempt in (1, 2, 3):
            [through_devices] = await provider.send_many([message], attempt)
            [direct] = await plain.send_many([message], attempt)
            assert isinstance(through_devices, DeviceCounts) == (direct is None), (i, attempt)


# The pipeline with device providers: counts reach the outcome event.


@pytest.fixture
def device_registry(monkeypatch: pytest.MonkeyPatch) -> MemoryDevices:
    """Make test_pipeline's run_pipeline build device providers over its mocks; the
    registry they read."""
    registry = MemoryDevices()

    def build_device_providers(options: ProviderOptions) -> dict[str, Provider]:
        clients: dict[str, PushClient] = {}
        for name, provider in build_providers(options).items():
            assert isinstance(provider, MockProvider)
            clients[name] = MockPushClient(provider)
        delivery = DeviceDelivery(clients, lambda user, device: None)
        delivery.registry = registry
        return {name: DeviceProvider(name, delivery) for name in clients}

    monkeypatch.setattr(pipeline_tests, "build_providers", build_device_providers)
    return registry


async def test_pipeline_outcomes_carry_device_counts(
    autojump_clock: trio.abc.Clock, device_registry: MemoryDevices
) -> None:
    for device in (Device("fcm", "phone"), Device("fcm", "tablet"), Device("apns", "watch")):
        await device_registry.put("with-devices", device)
    async with pipeline_tests.run_pipeline(retry_attempts=0) as running:
        await running.publish(
            [
                note("named", "with-devices", provider="fcm"),
                note("any", "with-devices"),
                note("lonely", "no-devices", provider="fcm"),
            ]
        )
        events = {e["id"]: e for e in await running.outcomes(3)}
        dead = running.dead_letters()
    assert events["named"]["event"] == "delivered"
    assert events["named"]["devices"] == {"accepted": 2, "failed": 0, "pruned": 0}
    assert events["any"]["event"] == "delivered"
    assert events["any"]["devices"] == {"accepted": 3, "failed": 0, "pruned": 0}
    assert events["lonely"]["event"] == "failed"
    assert events["lonely"]["error"] == "no registered device"
    assert events["lonely"]["devices"] == {"accepted": 0, "failed": 0, "pruned": 0}
    assert events["lonely"]["attempts"] == 1  # permanent: never retried
    [(_, value, headers, _)] = dead
    assert b'"lonely"' in (value or b"")
    assert dict(headers)["pushtrio-outcome"] == b"failed"


async def test_a_device_provider_counts_per_notification(setup: Setup) -> None:
    """What /providers and /health read: delivered, failed (and how); a user with no
    device is not the provider's failure."""
    await setup.register("u1", ("fcm", "ok"))
    await setup.register("u2", ("fcm", "busy"))
    await setup.register("u3", ("fcm", "bad"))
    setup.clients["fcm"].answer("busy", TokenState.TRANSIENT, "UNAVAILABLE")
    setup.clients["fcm"].answer("bad", TokenState.PERMANENT, "INVALID_ARGUMENT")
    provider = setup.providers["fcm"]
    await provider.send_many([notification(f"n{u}", f"u{u}") for u in (1, 2, 3, 4)], 1)
    stats = provider.stats()
    assert (stats.sent, stats.failed_transient, stats.failed_permanent) == (1, 1, 1)
    assert stats.healthy
    await provider.send_many([notification("again", "u2")], 2)
    await provider.send_many([notification("more", "u2")], 3)
    assert provider.stats().consecutive_failures >= 2
    await provider.send_many([notification("fine", "u1")], 1)
    assert provider.stats().consecutive_failures == 0


class StalledClient(ScriptedClient):
    """Never answers (a provider that stopped reading)."""

    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        self.calls.append((notification.id, tuple(tokens)))
        await trio.sleep_forever()
        raise AssertionError("unreachable")


class BrokenClient(ScriptedClient):
    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        raise RuntimeError("a bug in the client")


async def test_a_stalled_provider_keeps_the_answers_that_came(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    """The deadline is the device provider's, below the pipeline's: one stalled phone
    does not throw away the push another phone accepted (no second push there)."""
    setup.clients["apns"] = StalledClient("apns")
    setup.delivery.clients["apns"] = setup.clients["apns"]
    setup.delivery.deadline_s = 2.0
    await setup.register("u1", ("fcm", "phone"), ("apns", "tablet"))
    started = trio.current_time()
    [result] = await setup.providers["fcm"].send_many([notification(any_provider=True)], 1)
    assert trio.current_time() - started == pytest.approx(2.0)
    assert result == DeviceCounts(accepted=1, failed=1, pruned=0)


async def test_a_stalled_only_device_is_a_transient_timeout(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    setup.delivery.clients["apns"] = StalledClient("apns")
    setup.delivery.deadline_s = 2.0
    await setup.register("u1", ("apns", "tablet"))
    [result] = await setup.providers["apns"].send_many([notification(provider="apns")], 1)
    assert isinstance(result, TransientProviderError)
    assert result.reason == "timeout"


async def test_a_client_that_raises_fails_its_tokens_transiently(setup: Setup) -> None:
    setup.delivery.clients["apns"] = BrokenClient("apns")
    await setup.register("u1", ("apns", "tablet"), ("fcm", "phone"))
    [only_apns] = await setup.providers["apns"].send_many([notification(provider="apns")], 1)
    assert isinstance(only_apns, TransientProviderError)
    assert "a bug in the client" in only_apns.reason
    [both] = await setup.providers["fcm"].send_many([notification(any_provider=True)], 1)
    assert both == DeviceCounts(accepted=1, failed=1, pruned=0)


async def test_fcm_and_firebase_are_one_service_for_devices(setup: Setup) -> None:
    """Both names mean FCM HTTP v1: a phone registered under one gets notifications
    that name the other."""
    await setup.register("u1", ("fcm", "phone"))
    await setup.register("u2", ("firebase", "other-phone"))
    results = await setup.providers["firebase"].send_many(
        [notification("a", "u1", "firebase"), notification("b", "u2", "fcm")], 1
    )
    assert results == [DeviceCounts(accepted=1), DeviceCounts(accepted=1)]
    assert setup.clients["fcm"].calls == [("a", ("phone",))]
    assert setup.clients["firebase"].calls == [("b", ("other-phone",))]


async def test_a_notification_naming_no_provider_is_routed_to_one_its_user_has(
    setup: Setup,
) -> None:
    """Its breaker is then one of a service the user's phones use: an APNs outage
    cannot open the FCM breaker through users who only have iPhones."""
    await setup.register("iphone-only", ("apns", "t1"))
    await setup.register("both", ("apns", "t2"), ("fcm", "t3"))
    routed = await setup.delivery.route(
        [
            notification("a", "iphone-only", "fcm", any_provider=True),
            notification("b", "both", "fcm", any_provider=True),
            notification("c", "iphone-only", "fcm"),  # named: stays
            notification("d", "nobody", "firebase", any_provider=True),  # no device: stays
            notification("e", "iphone-only", "fcm", tokens=("x",)),  # tokens: stays
        ]
    )
    assert [(n.id, n.provider, n.any_provider) for n in routed] == [
        ("a", "apns", True),
        ("b", "fcm", True),
        ("c", "fcm", False),
        ("d", "firebase", True),
        ("e", "fcm", False),
    ]
    assert setup.registry.lookups == [["iphone-only", "both", "nobody"]]
