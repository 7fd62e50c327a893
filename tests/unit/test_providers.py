"""The mock providers: determinism, success share, failure mix, counters, health."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from pushtrio.contract.errors import PermanentProviderError, ProviderError, TransientProviderError
from pushtrio.contract.notification import PROVIDERS as PROVIDER_NAMES
from pushtrio.contract.notification import Notification
from pushtrio.contract.outcome import DeviceCounts
from pushtrio.providers import (
    FAILURE_MIX,
    MockProvider,
    Provider,
    ProviderOptions,
    ProviderStats,
    build_providers,
    provider_stats,
)
from pushtrio.providers.base import UNHEALTHY_AFTER_FAILURES


def note(notification_id: str) -> Notification:
    return Notification(id=notification_id, user_id="u1", title="hi", provider="fcm")


async def result(provider: Provider, notification_id: str, attempt: int = 1) -> str:
    """'ok', or 'transient:<reason>' / 'permanent:<reason>'."""
    try:
        await provider.send(note(notification_id), attempt)
    except PermanentProviderError as exc:
        return f"permanent:{exc.reason}"
    except TransientProviderError as exc:
        return f"transient:{exc.reason}"
    return "ok"


async def results(provider: Provider, ids: list[str], attempt: int = 1) -> list[str]:
    return [await result(provider, i, attempt) for i in ids]


def test_failure_mix_shares_add_up_and_are_mostly_transient() -> None:
    assert sum(share for _, _, share in FAILURE_MIX) == pytest.approx(1.0)
    transient = sum(share for _, permanent, share in FAILURE_MIX if not permanent)
    assert transient == pytest.approx(0.8)


def test_is_a_provider() -> None:
    provider: Provider = MockProvider("fcm", 0.9, 0.0, seed=1)
    assert provider.name == "fcm"


@pytest.mark.parametrize(("rate", "latency_s"), [(-0.1, 0.0), (1.5, 0.0), (0.5, -1.0)])
def test_rejects_bad_arguments(rate: float, latency_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        MockProvider("fcm", rate, latency_s)


async def test_seeded_results_depend_only_on_seed_id_and_attempt() -> None:
    ids = [f"n-{i}" for i in range(300)]
    first = MockProvider("fcm", 0.5, 0.0, seed=42)
    second = MockProvider("fcm", 0.5, 0.0, seed=42)
    forward = await results(first, ids)
    # Another instance, calls in the opposite order, interleaved with other attempts.
    backward: list[str] = []
    for i in reversed(ids):
        await result(second, i, attempt=2)
        backward.append(await result(second, i))
    assert forward == backward[::-1]
    assert forward != await results(first, ids, attempt=2)
    assert forward != await results(MockProvider("fcm", 0.5, 0.0, seed=43), ids)


async def test_seeded_results_are_the_same_under_concurrency(
    autojump_clock: trio.abc.Clock,
) -> None:
    ids = [f"n-{i}" for i in range(200)]
    expected = await results(MockProvider("apns", 0.6, 0.01, seed=7), ids)
    provider = MockProvider("apns", 0.6, 0.01, seed=7)
    got: dict[str, str] = {}

    async def one(notification_id: str) -> None:
        got[notification_id] = await result(provider, notification_id)

    async with trio.open_nursery() as nursery:
        for i in reversed(ids):
            nursery.start_soon(one, i)
    assert [got[i] for i in ids] == expected


@pytest.mark.parametrize("rate", [0.95, 0.7, 0.3])
async def test_success_share_is_close_to_the_rate(rate: float) -> None:
    provider = MockProvider("fcm", rate, 0.0, seed=2024)
    outcomes = await results(provider, [f"id-{i}" for i in range(10_000)])
    share = outcomes.count("ok") / len(outcomes)
    assert share == pytest.approx(rate, abs=0.02)


async def test_rate_one_never_fails_and_rate_zero_never_succeeds() -> None:
    ids = [f"id-{i}" for i in range(2000)]
    assert set(await results(MockProvider("fcm", 1.0, 0.0, seed=1), ids)) == {"ok"}
    assert "ok" not in await results(MockProvider("fcm", 0.0, 0.0, seed=1), ids)
    # Unseeded too: the extremes hold whatever the draws.
    assert set(await results(MockProvider("fcm", 1.0, 0.0), ids[:500])) == {"ok"}
    assert "ok" not in await results(MockProvider("fcm", 0.0, 0.0), ids[:500])


async def test_failures_mix_transient_and_permanent() -> None:
    outcomes = await results(MockProvider("fcm", 0.0, 0.0, seed=5), [f"x{i}" for i in range(5000)])
    permanent = [o for o in outcomes if o.startswith("permanent:")]
    transient = [o for o in outcomes if o.startswith("transient:")]
    assert len(permanent) + len(transient) == len(outcomes)
    assert len(permanent) / len(outcomes) == pytest.approx(0.2, abs=0.03)
    reasons = {o.split(":", 1)[1] for o in outcomes}
    assert reasons == {reason for reason, _, _ in FAILURE_MIX}


async def test_errors_name_the_provider() -> None:
    with pytest.raises(ProviderError) as info:
        await MockProvider("apns", 0.0, 0.0, seed=1).send(note("a"), 1)
    assert info.value.provider == "apns"
    assert str(info.value).startswith("apns: ")


async def test_latency_is_waited(autojump_clock: trio.abc.Clock) -> None:
    provider = MockProvider("fcm", 1.0, 0.25, seed=1)
    start = trio.current_time()
    await provider.send(note("a"), 1)
    assert trio.current_time() - start == pytest.approx(0.25)


async def test_zero_latency_is_still_a_checkpoint() -> None:
    provider = MockProvider("fcm", 1.0, 0.0, seed=1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await provider.send(note("a"), 1)
    assert scope.cancelled_caught
    assert provider.stats().sent == 0


async def test_cancelled_call_is_not_counted(autojump_clock: trio.abc.Clock) -> None:
    provider = MockProvider("fcm", 0.0, 5.0, seed=1)
    with trio.move_on_after(1.0) as scope:
        await provider.send(note("a"), 1)
    assert scope.cancelled_caught
    assert provider.stats() == ProviderStats(name="fcm")


async def test_stats_count_every_call() -> None:
    provider = MockProvider("fcm", 0.5, 0.0, seed=9)
    outcomes = await results(provider, [f"s{i}" for i in range(400)])
    stats = provider.stats()
    assert stats.sent == outcomes.count("ok")
    assert stats.failed_transient == sum(o.startswith("transient:") for o in outcomes)
    assert stats.failed_permanent == sum(o.startswith("permanent:") for o in outcomes)
    assert stats.to_dict()["sent"] == stats.sent
    assert provider_stats(provider) == stats


async def test_unhealthy_after_consecutive_failures_and_recovers() -> None:
    provider = MockProvider("fcm", 0.0, 0.0, seed=3)
    await results(provider, [f"h{i}" for i in range(UNHEALTHY_AFTER_FAILURES - 1)])
    assert provider.healthy
    await result(provider, "last straw")
    assert not provider.healthy
    assert not provider.stats().healthy
    assert provider.stats().consecutive_failures == UNHEALTHY_AFTER_FAILURES
    provider.success_rate = 1.0
    assert await result(provider, "back") == "ok"
    assert provider.healthy
    assert provider.stats().consecutive_failures == 0


def test_provider_stats_of_a_provider_without_counters() -> None:
    class Bare:
        name = "bare"

        async def send(self, notification: Notification, attempt: int) -> None:
            return None

        async def send_many(
            self, notifications: Sequence[Notification], attempt: int
        ) -> list[ProviderError | DeviceCounts | None]:
            return [None] * len(notifications)

    assert provider_stats(Bare()) == ProviderStats(name="bare", healthy=True)


async def test_build_providers_uses_the_options() -> None:
    options = ProviderOptions(
        success_rates=(("fcm", 1.0), ("apns", 0.0), ("firebase", 0.5)),
        latency_s=0.02,
        seed=11,
    )
    providers = build_providers(options)
    assert tuple(providers) == PROVIDER_NAMES
    for name, provider in providers.items():
        assert provider.name == name
        assert isinstance(provider, MockProvider)
        assert provider.success_rate == dict(options.success_rates)[name]
        assert provider.latency_s == 0.02
    assert await result(providers["fcm"], "a") == "ok"
    assert await result(providers["apns"], "a") != "ok"


async def test_build_providers_seeds_each_provider_apart() -> None:
    rates = tuple((name, 0.5) for name in PROVIDER_NAMES)
    options = ProviderOptions(success_rates=rates, latency_s=0.0, seed=11)
    ids = [f"b{i}" for i in range(200)]
    once = {name: await results(p, ids) for name, p in build_providers(options).items()}
    again = {name: await results(p, ids) for name, p in build_providers(options).items()}
    assert once == again
    assert once["fcm"] != once["apns"] != once["firebase"]


def test_build_providers_without_seed_is_unseeded() -> None:
    providers = build_providers(ProviderOptions(success_rates=(("fcm", 1.0),), seed=None))
    assert all(isinstance(p, MockProvider) and p.seed is None for p in providers.values())


@pytest.mark.parametrize(
    ("mode", "kinds"),
    [
        ("transient", {"transient"}),
        ("permanent", {"permanent"}),
        ("mixed", {"transient", "permanent"}),
    ],
)
async def test_the_failure_mode_chooses_which_failures_are_simulated(
    mode: str, kinds: set[str]
) -> None:
    provider = MockProvider("fcm", success_rate=0.0, latency_s=0.0, seed=3)
    provider.configure(failure=mode)
    outcomes = await results(provider, [f"f{i}" for i in range(300)])
    assert {outcome.split(":")[0] for outcome in outcomes} == kinds
    reasons = {outcome.split(":")[1] for outcome in outcomes}
    expected = {
        r
        for r, permanent, _ in FAILURE_MIX
        if mode == "mixed" or permanent == (mode == "permanent")
    }
    assert reasons == expected


async def test_configure_changes_a_live_provider_and_refuses_bad_values() -> None:
    provider = MockProvider("fcm", success_rate=1.0, latency_s=0.0, seed=3)
    provider.configure(success_rate=0.0, latency_s=0.25)
    assert provider.describe() == {"success_rate": 0.0, "latency_ms": 250.0, "failure": "mixed"}
    assert (await result(provider, "x")) != "ok"
    for bad in ({"success_rate": 1.5}, {"latency_s": -1.0}, {"failure": "sometimes"}):
        with pytest.raises(ValueError, match="must be"):
            provider.configure(**bad)
    assert provider.describe() == {"success_rate": 0.0, "latency_ms": 250.0, "failure": "mixed"}
    provider.configure(success_rate=1.0)
    assert await result(provider, "x") == "ok"
