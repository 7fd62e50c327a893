"""Phase 8: real delivery through the local protocol fakes, next to the mock providers.

The same number of notifications three times through ``pushtrio serve``, each naming
one device token of the provider it names (so no device is registered):

    mocks   no credentials: the mock providers at PROVIDER_LATENCY=5ms, half to
            APNs and half to FCM
    apns    every notification to APNs, through :class:`tests.fakes.apns.FakeApns`
            (HTTP/2 over TLS) answering each request after FAKE_LATENCY_S
    fcm     every notification to FCM, through :class:`tests.fakes.fcm.FakeFcm`
            (HTTP/1.1, with its OAuth2 token endpoint) answering after FAKE_LATENCY_S

Each run is timed from its first outcome to its last (outcome ``ts``). The service's
CPU seconds are counted from the moment the harness first sees an outcome to the
moment it has seen all of them, and divided by the notifications settled in between,
so start-up is left out. The fakes serve from threads of this harness process
(:func:`tests.fakes.running.in_thread`): their CPU is the harness's, never the
service's.

The APNs fake keeps its connection for the whole run, as Apple does for hours (its
server would otherwise send GOAWAY every 1,000 requests; the client's recovery from
that is a unit test, not a throughput figure).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
from tests.fakes.apns import DEFAULT_TOPIC, FakeApns
from tests.fakes.fcm import FakeFcm
from tests.fakes.keys import ec_key_pair
from tests.fakes.running import in_thread

from .context import Bench, reported_settings
from .cpu import CpuFigures
from .kafka_io import Record
from .memory import MemoryFigures
from .serve import BenchmarkError, MeasuredServe, OutcomeTail
from .stats import rate

FAKE_LATENCY_S = 0.005
SETTINGS = {"PROVIDER_LATENCY": "5ms", "PROVIDER_SUCCESS_RATE": "1"}
MOCK_PROVIDERS = ("apns", "fcm")
USERS = 1000
KEY_ID = "BENCHKEY01"
TEAM_ID = "BENCHTEAM1"
POLL_INTERVAL_S = 0.05
REQUESTS_PER_CONNECTION = 10**9


def apns_token(i: int) -> str:
    """The ``i``-th APNs device token: 64 hex digits, as Apple's are."""
    return f"{i:064x}"


def fcm_token(i: int) -> str:
    """The ``i``-th FCM registration token (real ones are ~160 characters of this alphabet)."""
    return f"bench-fcm:{i:08d}"


_TOKENS = {"apns": apns_token, "fcm": fcm_token}


def provider_records(count: int, providers: Sequence[str], prefix: str) -> list[Record]:
    """``count`` notifications, record ``i`` to ``providers[i % len(providers)]`` and to
    that provider's ``i``-th token, for USERS users in turn; keyed by user."""
    if not providers:
        raise ValueError("provider_records needs at least one provider")
    records = []
    for i in range(count):
        provider = providers[i % len(providers)]
        user = f"user-{i % USERS}"
        document = {
            "id": f"{prefix}-{i}",
            "user_id": user,
            "title": f"Notification {i}",
            "body": "Your order has shipped",
            "provider": provider,
            "tokens": [_TOKENS[provider](i)],
        }
        records.append((user.encode(), orjson.dumps(document)))
    return records


def per_notification_us(cpu_s: float, count: int) -> float:
    """CPU microseconds per notification; 0 when none was counted."""
    return 1e6 * cpu_s / count if count > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ProviderRun:
    """One ``pushtrio serve`` delivering every notification of a run."""

    name: str
    label: str
    messages: int
    outcomes: dict[str, int]
    startup_s: float
    """Process start to the first outcome."""
    seconds: float
    """First outcome to the last (outcome ``ts``)."""
    rate: float
    cpu_s: float
    """Service CPU (user + system) while ``cpu_notifications`` were settled."""
    cpu_notifications: int
    cpu_us_per_notification: float
    cpu: CpuFigures
    """Over the same span as ``cpu_s``; the harness includes the fake."""
    memory: MemoryFigures


@dataclass(frozen=True, slots=True)
class ApnsFigures:
    requests: int
    accepted: int
    """Requests the fake answered 200."""
    connections: int
    """Distinct HTTP/2 connections the requests came on."""
    max_concurrent_streams: int
    """Most requests open at once."""
    stream_limit: int
    """The fake's SETTINGS_MAX_CONCURRENT_STREAMS."""


@dataclass(frozen=True, slots=True)
class FcmFigures:
    requests: int
    accepted: int
    token_exchanges: int
    """OAuth2 access tokens the service fetched."""


@dataclass(frozen=True, slots=True)
class ProvidersResult:
    messages: int
    fake_latency_ms: float
    runs: list[ProviderRun]
    """mocks, apns, fcm: in that order."""
    apns: ApnsFigures
    fcm: FcmFigures
    settings: dict[str, str]


def run_providers(bench: Bench, messages: int) -> ProvidersResult:
    """The three runs of ``messages`` notifications; see the module docstring.

    Raises BenchmarkError if a service exits or a run does not finish in time.
    Every service and fake is stopped however this returns.
    """
    timeout_s = 120.0 + messages / 100.0
    mocks = _measure(
        bench,
        "providers-mocks",
        "mocks",
        provider_records(messages, MOCK_PROVIDERS, "mock"),
        SETTINGS,
        timeout_s,
    )
    apns_run, apns = _apns_run(bench, messages, timeout_s)
    fcm_run, fcm = _fcm_run(bench, messages, timeout_s)
    return ProvidersResult(
        messages=messages,
        fake_latency_ms=FAKE_LATENCY_S * 1000,
        runs=[mocks[0], apns_run, fcm_run],
        apns=apns,
        fcm=fcm,
        settings=mocks[1],
    )


def _apns_run(bench: Bench, messages: int, timeout_s: float) -> tuple[ProviderRun, ApnsFigures]:
    directory = _directory(bench, "providers-apns")
    fake = FakeApns(directory, requests_per_connection=REQUESTS_PER_CONNECTION)
    private_pem, public_pem = ec_key_pair()
    fake.add_key(KEY_ID, TEAM_ID, public_pem)
    key_file = directory / "apns.p8"
    key_file.write_bytes(private_pem)
    fake.set_latency(FAKE_LATENCY_S)
    records = provider_records(messages, ("apns",), "apns")
    with in_thread(fake) as port:
        credentials = {
            "APNS_KEY_FILE": str(key_file),
            "APNS_KEY_ID": KEY_ID,
            "APNS_TEAM_ID": TEAM_ID,
            "APNS_TOPIC": DEFAULT_TOPIC,
            "APNS_ENDPOINT": f"https://127.0.0.1:{port}",
            "APNS_CA_FILE": fake.ca_file,
        }
        run, _ = _measure(
            bench, "providers-apns", "APNs fake", records, {**SETTINGS, **credentials}, timeout_s
        )
        requests = fake.requests
        figures = ApnsFigures(
            requests=len(requests),
            accepted=sum(1 for request in requests if request.status == 200),
            connections=fake.connections,
            max_concurrent_streams=fake.max_concurrent_requests,
            stream_limit=fake.max_concurrent_streams,
        )
    return run, figures


def _fcm_run(bench: Bench, messages: int, timeout_s: float) -> tuple[ProviderRun, FcmFigures]:
    directory = _directory(bench, "providers-fcm")
    fake = FakeFcm()
    fake.set_latency(FAKE_LATENCY_S)
    records = provider_records(messages, ("fcm",), "fcm")
    with in_thread(fake) as port:
        credentials = {
            "FCM_CREDENTIALS_FILE": str(fake.write_credentials(directory / "service-account.json")),
            "FCM_ENDPOINT": f"http://127.0.0.1:{port}",
        }
        run, _ = _measure(
            bench, "providers-fcm", "FCM fake", records, {**SETTINGS, **credentials}, timeout_s
        )
        received = fake.messages()
        figures = FcmFigures(
            requests=len(received),
            accepted=sum(1 for message in received if message.http_status == 200),
            token_exchanges=fake.token_exchanges,
        )
    return run, figures


def _directory(bench: Bench, name: str) -> Path:
    directory = bench.workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _measure(
    bench: Bench,
    phase: str,
    label: str,
    records: Sequence[Record],
    overrides: Mapping[str, str],
    timeout_s: float,
) -> tuple[ProviderRun, dict[str, str]]:
    """Produce ``records`` to a fresh topic, serve them to the end; the run's figures
    and its reported settings."""
    topic, group = bench.new_topic(phase)
    bench.flush_redis()
    bench.produce(topic, records, f"{phase}: produce")
    with bench.start_serve(phase, topic, group, overrides) as serve:
        outcomes, cpu_s, counted = _settle_all(bench, serve, phase, len(records), timeout_s)
        cpu = serve.cpu.figures()
        memory = serve.rss.figures()
        settings = reported_settings(serve.env)
    times = sorted(float(outcome["ts"]) for outcome in outcomes)
    seconds = times[-1] - times[0]
    run = ProviderRun(
        name=phase.removeprefix("providers-"),
        label=label,
        messages=len(records),
        outcomes=dict(Counter(str(outcome["event"]) for outcome in outcomes).most_common()),
        startup_s=times[0] - serve.started_wall,
        seconds=seconds,
        rate=rate(len(outcomes), seconds),
        cpu_s=cpu_s,
        cpu_notifications=counted,
        cpu_us_per_notification=per_notification_us(cpu_s, counted),
        cpu=cpu,
        memory=memory,
    )
    return run, settings


def _settle_all(
    bench: Bench, serve: MeasuredServe, phase: str, total: int, timeout_s: float
) -> tuple[list[dict[str, Any]], float, int]:
    """Read the outcome log until it holds ``total`` outcomes; return them, the
    service's CPU seconds from the first one seen to the last, and how many were
    settled in that span. Restarts ``serve.cpu`` at the first outcome seen."""
    task = bench.progress.add_task(f"{phase}: serve", total=total)
    process = psutil.Process(serve.proc.pid)
    tail = OutcomeTail(serve.outcome_log)
    outcomes: list[dict[str, Any]] = []
    base: tuple[float, int] | None = None
    deadline = time.perf_counter() + timeout_s
    while True:
        serve.check_alive()
        outcomes += tail.read_new()
        if base is None and outcomes:
            serve.cpu.restart()
            base = (_cpu_s(process), len(outcomes))
        bench.progress.update(task, completed=len(outcomes))
        if base is not None and len(outcomes) >= total:
            return outcomes, _cpu_s(process) - base[0], len(outcomes) - base[1]
        if time.perf_counter() > deadline:
            raise BenchmarkError(
                f"{phase}: {len(outcomes)} of {total} outcomes in {timeout_s:.0f}s"
            )
        time.sleep(POLL_INTERVAL_S)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)
