"""Process-level faults (issue 7): the broker or Redis going away, the topic changing.

``pushtrio serve`` runs as a child process against a private Kafka broker (one for
the module, stopped and restarted on its own data) and a private Redis (one per
test, killed and restarted empty): the shared services are never touched. Each
test has a whole-test time limit, prints its figures and cleans up what it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from kafka.admin import NewPartitions

from ..support.files import count_lines, read_jsonl, tail, wait_lines
from ..support.kafka import (
    committed_offsets,
    committed_when_loaded,
    notification,
    produce,
    produce_to_partitions,
    wait_committed,
)
from ..support.process import ServeProcess, serve_env
from ..support.requirements import required, unavailable
from ..support.waiting import wait_for
from .private_services import (
    PrivateKafka,
    PrivateRedis,
    get_health,
    missing_tools,
    process_cpu_s,
    settled_prefix,
    time_limit,
)

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT_S = 5
SHUTDOWN_SLACK_S = 5
# About 2,000 notifications a second at most (2 workers, batches of 100, 100 ms per
# provider call), so that a fault lands in the middle of the stream.
THROTTLED = {
    "WORKER_COUNT": "2",
    "MAX_QUEUE_SIZE": "400",
    "PROVIDER_LATENCY": "100ms",
}
# ~1 KiB records: kafka-python buffers one fetch (up to 1 MiB) per partition, so
# small records would all be in the service's memory before the fault.
PADDING = "x" * 1000
HEALTH_DETECT_S = 5.0
RESUME_BOUND_S = 15.0
# A delivered outcome's ts is taken when the provider answers; a batch admitted just
# before Redis died may still be answered this long after (provider latency + slack).
ADMITTED_BEFORE_KILL_GRACE_S = 1.0


# -- fixtures --------------------------------------------------------------------------


def _require_tools() -> None:
    if not (required() or os.environ.get("PUSHTRIO_TEST_KAFKA")):
        pytest.skip("integration tests run under scripts/test.sh")
    missing = missing_tools()
    if missing:
        unavailable(f"private services need: {', '.join(missing)}")


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    """This module's own broker; tests stop and restart it at will."""
    _require_tools()
    broker = PrivateKafka(tmp_path_factory.mktemp("private-kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture
def kafka(private_kafka: PrivateKafka) -> PrivateKafka:
    """The module's broker, running (a test before may have left it stopped)."""
    if not private_kafka.running:
        private_kafka.start()
    return private_kafka


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    _require_tools()
    with PrivateRedis(tmp_path / "redis") as server:
        yield server


# -- helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthSample:
    at: float  # monotonic
    status: int | None
    document: Any


def padded(prefix: str, i: int, users: int) -> tuple[bytes, bytes]:
    return notification(f"{prefix}-{i}", f"user-{i % users}", body=PADDING)


def new_topic(broker: PrivateKafka, partitions: int) -> str:
    name = f"fault-{uuid.uuid4().hex[:10]}"
    broker.create_topic(name, partitions)
    return name


def watch_health(url: str, seconds: float, every_s: float = 0.5) -> list[HealthSample]:
    """Hold the current state for ``seconds``, sampling GET /health meanwhile."""
    samples = []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        status, document = get_health(url, timeout_s=3)
        samples.append(HealthSample(now, status, document))
        time.sleep(max(0.0, min(every_s, end - time.monotonic())))
    return samples


def summary(samples: list[HealthSample], origin: float) -> str:
    return ", ".join(f"+{s.at - origin:.1f}s:{s.status}" for s in samples)


def not_503_while_down(samples: list[HealthSample], down_at: float, back_at: float) -> list[str]:
    """Problems: /health not 503 from HEALTH_DETECT_S after the fault until it ended."""
    window = [s for s in samples if down_at + HEALTH_DETECT_S <= s.at < back_at]
    if not window:
        return ["no /health sample in the outage window"]
    wrong = [s for s in window if s.status != 503]
    if not wrong:
        return []
    first = wrong[0]
    return [
        f"/health answered {first.status} at +{first.at - down_at:.1f}s into the outage "
        f"({len(wrong)} of {len(window)} samples not 503): {str(first.document)[:600]}"
    ]


def error_texts(document: Any) -> list[str]:
    """Every non-empty value of an ``error`` key, anywhere in the document."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "error" and value:
                found.append(str(value))
            else:
                found.extend(error_texts(value))
    elif isinstance(document, list):
        for value in document:
            found.extend(error_texts(value))
    return found


def log_records(path: Path, after_wall: float = 0.0) -> list[dict[str, Any]]:
    """The serve process's JSON log lines (others skipped) logged after ``after_wall``."""
    records = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            record = orjson.loads(line)
            if isinstance(record, dict) and record.get("ts", 0) >= after_wall:
                records.append(record)
    return records


def final_outcome_problems(events: list[dict[str, Any]], ids: set[str]) -> list[str]:
    """Each id needs exactly one final outcome; extra lines (a re-read) must be `duplicate`."""
    finals = Counter(e["id"] for e in events if e["event"] != "duplicate")
    problems = []
    if set(finals) != ids:
        missing = sorted(ids - set(finals))
        problems.append(f"{len(missing)} ids without a final outcome, e.g. {missing[:5]}")
    twice = {i: c for i, c in finals.items() if c > 1}
    if twice:
        problems.append(f"{len(twice)} ids with several final outcomes, e.g. {list(twice)[:5]}")
    return problems


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[ServeProcess]:
    """``pushtrio serve`` until the block ends (then stopped); its log tail on failure."""
    stop_timeout_s = SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S
    with ServeProcess(env, log, stop_timeout_s=stop_timeout_s) as process:
        try:
            process.wait_ready()
            yield process
        except BaseException:
            print(f"\n--- last lines of {log.name} ---\n{tail(log, 60)}")
            raise


def longest_silence(events: list[dict[str, Any]], since_wall: float) -> float:
    """The longest time without a new outcome from ``since_wall`` to the last outcome."""
    times = sorted(e["ts"] for e in events if e["ts"] >= since_wall)
    if not times:
        return float("inf")
    return float(max(b - a for a, b in zip([since_wall, *times], times, strict=False)))


def first_advance(
    outcomes: Path, bootstrap: str, group: str, timeout_s: float
) -> tuple[float | None, float | None]:
    """Seconds until a new outcome line, and until the committed total grows."""
    started = time.monotonic()
    lines = count_lines(outcomes)
    committed: int | None = None
    outcome_s = commit_s = None
    while time.monotonic() - started < timeout_s and (outcome_s is None or commit_s is None):
        now = time.monotonic() - started
        if outcome_s is None and count_lines(outcomes) > lines:
            outcome_s = now
        if commit_s is None:
            with contextlib.suppress(Exception):  # the coordinator may still be loading
                total = sum(committed_offsets(bootstrap, group).values())
                if committed is None:
                    committed = total
                elif total > committed:
                    commit_s = now
        time.sleep(0.1)
    return outcome_s, commit_s


def sigterm_and_time(process: ServeProcess) -> tuple[float, int | None]:
    """SIGTERM; the seconds until exit (or the wait's bound) and the exit status.

    A process still running at the bound gets SIGABRT, so that faulthandler
    (PYTHONFAULTHANDLER, set by :func:`fault_env`) prints every thread's stack,
    and the dump is printed here.
    """
    process.signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        status: int | None = process.wait(SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S + 5)
    except subprocess.TimeoutExpired:
        status = None
    took = time.monotonic() - started
    if status is None:
        process.proc.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(10)
        dump = [
            line
            for line in process.log_path.read_text(errors="replace").splitlines()
            if not line.startswith("{")
        ]
        print(f"\n--- still running {took:.0f}s after SIGTERM; its threads ---")
        print("\n".join(dump[-80:]))
    return took, status


def fault_env(
    kafka: PrivateKafka, redis_addr: str, topic: str, tmp: Path, **extra: str
) -> dict[str, str]:
    """serve_env for the private services, with thread dumps on SIGABRT."""
    return serve_env(
        kafka.bootstrap,
        redis_addr,
        topic,
        tmp,
        "run",
        PYTHONFAULTHANDLER="1",
        SHUTDOWN_TIMEOUT=f"{SHUTDOWN_TIMEOUT_S}s",
        **extra,
    )


def healthy_before_fault(url: str) -> list[str]:
    """Problems: /health not 200 in steady state (then a 503 later proves nothing)."""
    deadline = time.monotonic() + 10
    status, document = get_health(url)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, document = get_health(url)
    if status == 200:
        return []
    return [f"/health was {status}, not 200, before the fault: {str(document)[:600]}"]


def over_committed(
    committed: dict[int, int], events: list[dict[str, Any]]
) -> dict[int, tuple[int, int]]:
    """Partitions committed past their first offset without an outcome.

    Returns partition -> (committed, first unsettled offset).
    """
    prefix = settled_prefix(events)
    return {p: (c, prefix.get(p, 0)) for p, c in committed.items() if c > prefix.get(p, 0)}


# -- tests -----------------------------------------------------------------------------


def test_broker_down_mid_stream_recovers_on_its_own(
    kafka: PrivateKafka, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    with time_limit(180):
        topic = new_topic(kafka, 6)
        n = 20_000
        produce(kafka.bootstrap, topic, (padded("b", i, 2000) for i in range(n)))
        env = fault_env(kafka, private_redis.addr, topic, tmp_path, **THROTTLED)
        group, outcomes = env["CONSUMER_GROUP"], Path(env["OUTCOME_LOG"])
        problems: list[str] = []

        with serving(env, tmp_path / "serve.log") as process:
            url = process.url
            wait_lines(outcomes, 4_000, 90)
            problems += healthy_before_fault(url)
            down_wall, down_at = time.time(), kafka.stop(signal.SIGKILL)
            at_stop = count_lines(outcomes)
            samples = watch_health(url, 12)
            three_s_before_restart = count_lines(outcomes)
            samples += watch_health(url, 3)
            back_at, at_restart = time.monotonic(), count_lines(outcomes)
            ready_at = kafka.start()
            ready_wall = time.time()
            outcome_s, commit_s = first_advance(outcomes, kafka.bootstrap, group, 60)
            print(
                f"\nbroker down (SIGKILL at wall {down_wall:.1f}, answering again at wall "
                f"{ready_wall:.1f}, {ready_at - back_at:.1f}s after its restart): {at_stop} "
                f"outcomes at the stop, {at_restart} at the restart (of {n}); first new outcome "
                f"{outcome_s}s and first commit advance {commit_s}s after it answered\n"
                f"/health from the stop: {summary(samples, down_at)}"
            )
            assert at_restart < n, "the stop came too late: everything was already processed"
            # Otherwise the first outcome after the restart could be one fetched before.
            assert three_s_before_restart == at_restart, "still draining when the broker returned"
            problems += not_503_while_down(samples, down_at, back_at)
            if outcome_s is None or outcome_s > RESUME_BOUND_S:
                problems.append(
                    f"processing resumed {outcome_s}s after the broker answered "
                    f"(bound {RESUME_BOUND_S}s)"
                )
            recovered_at = time.monotonic()
            wait_committed(kafka.bootstrap, group, topic, 90)
            wait_for(lambda: get_health(url)[0] == 200, 30, "/health 200 again")
            silence = longest_silence(read_jsonl(outcomes), ready_wall)
            print(
                f"all committed {time.monotonic() - recovered_at:.1f}s after the first advance; "
                f"longest time without an outcome after the broker answered: {silence:.1f}s"
            )
            if silence > RESUME_BOUND_S:
                problems.append(
                    f"after the broker answered, {silence:.1f}s passed without an outcome "
                    f"(bound {RESUME_BOUND_S}s)"
                )
            took, status = sigterm_and_time(process)
            if status != 0:
                problems.append(f"SIGTERM after recovery: exit status {status} after {took:.1f}s")

        problems += final_outcome_problems(read_jsonl(outcomes), {f"b-{i}" for i in range(n)})
        assert not problems, "\n".join(problems)


def test_redis_killed_mid_stream_recovers_and_never_skips_the_limit(
    kafka: PrivateKafka, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    with time_limit(150):
        topic = new_topic(kafka, 6)
        n, users, limit = 20_000, 200, 10
        produce(kafka.bootstrap, topic, (padded("r", i, users) for i in range(n)))
        env = fault_env(
            kafka,
            private_redis.addr,
            topic,
            tmp_path,
            RATE_LIMIT_PER_USER=str(limit),
            RATE_LIMIT_WINDOW="1h",
            **THROTTLED,
        )
        group, outcomes = env["CONSUMER_GROUP"], Path(env["OUTCOME_LOG"])
        problems: list[str] = []

        with serving(env, tmp_path / "serve.log") as process:
            url = process.url
            wait_lines(outcomes, 4_000, 90)
            problems += healthy_before_fault(url)
            killed_wall, down_at = time.time(), private_redis.kill()
            at_kill = count_lines(outcomes)
            samples = watch_health(url, 10)
            back_at, back_wall = time.monotonic(), time.time()
            at_restart = count_lines(outcomes)
            ready_at = private_redis.start()
            ready_wall = time.time()
            outcome_s, _ = first_advance(outcomes, kafka.bootstrap, group, 60)
            print(
                f"\nredis down (SIGKILL at wall {killed_wall:.1f}, back at {back_wall:.1f}): "
                f"{at_kill} outcomes at the kill, {at_restart} at the restart (of {n}); first "
                f"new outcome {outcome_s}s after Redis answered (+{ready_at - back_at:.2f}s)\n"
                f"/health from the kill: {summary(samples, down_at)}"
            )
            assert at_restart < n, "the kill came too late: everything was already processed"
            problems += not_503_while_down(samples, down_at, back_at)
            if outcome_s is None or outcome_s > RESUME_BOUND_S:
                problems.append(f"processing resumed {outcome_s}s after Redis answered")
            wait_committed(kafka.bootstrap, group, topic, 90)
            wait_for(lambda: get_health(url)[0] == 200, 30, "/health 200 again")
            silence = longest_silence(read_jsonl(outcomes), ready_wall)
            print(f"longest time without an outcome after Redis answered: {silence:.1f}s")
            if silence > RESUME_BOUND_S:
                problems.append(f"after Redis answered, {silence:.1f}s passed without an outcome")
            admitted_after = limiter_members(private_redis, users)
            took, status = sigterm_and_time(process)
            if status != 0:
                problems.append(f"SIGTERM after recovery: exit status {status} after {took:.1f}s")

        events = read_jsonl(outcomes)
        problems += final_outcome_problems(events, {f"r-{i}" for i in range(n)})
        problems += limit_problems(events, limit, killed_wall, back_wall, admitted_after)
        accepted = Counter(Path(env["MOCK_PROVIDER_JOURNAL"]).read_text().split()[1::2])
        delivered = {e["id"] for e in events if e["event"] == "delivered"}
        if set(accepted) != delivered or max(accepted.values()) > 1:
            problems.append("the provider journal does not match the delivered outcomes")
        kinds = Counter(e["event"] for e in events)
        assert kinds["rate_limited"] > 0, "the limit never bit: the test proves nothing"
        assert not problems, "\n".join(problems)


def limiter_members(server: PrivateRedis, users: int) -> set[str]:
    """Every message id holding a slot in some user's window."""
    client = server.client()
    try:
        return {
            member.decode()
            for u in range(users)
            for member in cast(list[bytes], client.zrange(f"rate_limit:user-{u}", 0, -1))
        }
    finally:
        client.close()


def limit_problems(
    events: list[dict[str, Any]],
    limit: int,
    killed_wall: float,
    back_wall: float,
    admitted_after: set[str],
) -> list[str]:
    """Whether every delivery had a limit decision, before the kill and after the restart.

    Before the kill: at most ``limit`` per user. While Redis was down: none. After
    the restart (Redis empty): exactly the ids the new Redis holds slots for.
    """
    delivered = [e for e in events if e["event"] == "delivered"]
    cut = killed_wall + ADMITTED_BEFORE_KILL_GRACE_S
    before = [e for e in delivered if e["ts"] <= cut]
    during = [e for e in delivered if cut < e["ts"] < back_wall]
    after = {e["id"] for e in delivered if e["ts"] >= back_wall}
    kinds = Counter(e["event"] for e in events)
    print(f"outcomes {dict(kinds)}; delivered {len(before)} before the kill, {len(after)} after")
    problems = []
    if during:
        problems.append(f"{len(during)} delivered while Redis was down, e.g. {during[0]}")
    over = {u: c for u, c in Counter(e["user_id"] for e in before).items() if c > limit}
    if over:
        problems.append(f"users over the limit before the kill: {dict(list(over.items())[:5])}")
    if after != admitted_after:
        problems.append(
            f"delivered after the restart without a slot in Redis: {len(after - admitted_after)}"
            f"; holding a slot but not delivered: {len(admitted_after - after)}"
        )
    return problems


def test_partitions_added_while_running_are_consumed(
    kafka: PrivateKafka, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    with time_limit(120):
        topic = new_topic(kafka, 2)
        env = fault_env(kafka, private_redis.addr, topic, tmp_path)
        group, outcomes = env["CONSUMER_GROUP"], Path(env["OUTCOME_LOG"])
        with serving(env, tmp_path / "serve.log") as process:
            produce(kafka.bootstrap, topic, (notification(f"a-{i}", f"u-{i}") for i in range(200)))
            wait_committed(kafka.bootstrap, group, topic, 60)
            admin = kafka.admin()
            try:
                admin.create_partitions({topic: NewPartitions(total_count=4)})
            finally:
                admin.close()
            added_at, added_wall = time.monotonic(), time.time()
            new_ids = {f"new-{p}-{i}" for p in (2, 3) for i in range(100)}
            produce_to_partitions(
                kafka.bootstrap,
                topic,
                [(p, *notification(f"new-{p}-{i}", f"u-{i}")) for p in (2, 3) for i in range(100)],
            )

            def outcomes_of_new() -> int:
                return len({e["id"] for e in read_jsonl(outcomes)} & new_ids)

            with contextlib.suppress(AssertionError):
                wait_for(
                    lambda: outcomes_of_new() == len(new_ids), 30, "new partitions", every_s=0.2
                )
            took, got = time.monotonic() - added_at, outcomes_of_new()
            assigned = get_health(process.url)[1]["components"]["kafka"]["assigned_partitions"]
            print(
                f"\npartitions 2 and 3 added at wall {added_wall:.1f}: {got} of {len(new_ids)} of "
                f"their records had an outcome after {took:.1f}s; assigned {assigned}"
            )
            assert got == len(new_ids), (
                f"records on the added partitions: {got} of {len(new_ids)} had an outcome "
                f"{took:.0f}s after the partitions were added; assigned partitions {assigned}"
            )
            committed = wait_committed(kafka.bootstrap, group, topic, 30)
            assert sorted(committed) == [0, 1, 2, 3]
            took, status = sigterm_and_time(process)
            print(f"SIGTERM: exit {status} after {took:.1f}s")


def test_topic_deleted_while_running_is_reported_without_spinning(
    kafka: PrivateKafka, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    with time_limit(120):
        topic = new_topic(kafka, 2)
        env = fault_env(kafka, private_redis.addr, topic, tmp_path)
        group, log = env["CONSUMER_GROUP"], tmp_path / "serve.log"
        problems: list[str] = []
        with serving(env, log) as process:
            url = process.url
            produce(kafka.bootstrap, topic, (notification(f"d-{i}", f"u-{i}") for i in range(200)))
            wait_committed(kafka.bootstrap, group, topic, 60)
            problems += healthy_before_fault(url)
            admin = kafka.admin()
            try:
                admin.delete_topics([topic])
            finally:
                admin.close()
            deleted_at, deleted_wall = time.monotonic(), time.time()

            def reported() -> bool:
                status, document = get_health(url)
                return status == 503 and any(topic in e for e in error_texts(document))

            with contextlib.suppress(AssertionError):
                wait_for(reported, 30, "topic reported", every_s=0.5)
            status, document = get_health(url)
            detect_s = time.monotonic() - deleted_at
            cpu_before, cpu_from = process_cpu_s(process.proc.pid), time.monotonic()
            lines_before = len(log_records(log))
            watch_health(url, 5, every_s=1.0)
            cpu_share = (process_cpu_s(process.proc.pid) - cpu_before) / (
                time.monotonic() - cpu_from
            )
            lines_in_5s = len(log_records(log)) - lines_before
            alive = process.proc.poll() is None
            warnings = [
                r["msg"]
                for r in log_records(log, deleted_wall)
                if r.get("level") in ("warning", "error", "critical") and topic in str(r)
            ]
            print(
                f"\ntopic deleted at wall {deleted_wall:.1f}: /health {status} after "
                f"{detect_s:.1f}s, errors {error_texts(document)}; CPU {cpu_share:.0%} of a core "
                f"over 5s; {lines_in_5s} log lines in 5s; {len(warnings)} warnings naming the "
                f"topic{', e.g. ' + warnings[0][:300] if warnings else ''}; alive: {alive}"
            )
            if not (status == 503 and any(topic in e for e in error_texts(document))):
                problems.append(f"/health {status} without an error naming the topic: {document}")
            if not warnings:
                problems.append("no warning or error in the log names the deleted topic")
            if not alive:
                problems.append(f"the process exited with {process.proc.returncode}")
            if cpu_share > 0.5:
                problems.append(f"busy: {cpu_share:.0%} of a core while the topic is gone")
            if lines_in_5s > 100:
                problems.append(f"log flood: {lines_in_5s} lines in 5s")
            if alive:
                took, exit_status = sigterm_and_time(process)
                print(f"SIGTERM: exit {exit_status} after {took:.1f}s")
                if exit_status != 0 or took > SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S:
                    problems.append(f"SIGTERM: exit status {exit_status} after {took:.1f}s")
        assert not problems, "\n".join(problems)


@pytest.mark.parametrize("down", ["broker", "redis"])
def test_sigterm_while_a_backend_is_down_exits_in_time_and_commits_only_settled(
    down: str, kafka: PrivateKafka, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    with time_limit(150):
        topic = new_topic(kafka, 6)
        n = 10_000
        produce(kafka.bootstrap, topic, (padded(down[0], i, 1000) for i in range(n)))
        env = fault_env(kafka, private_redis.addr, topic, tmp_path, **THROTTLED)
        outcomes = Path(env["OUTCOME_LOG"])
        with serving(env, tmp_path / "serve.log") as process:
            wait_lines(outcomes, 2_000, 90)
            killed_wall = time.time()
            if down == "broker":
                kafka.stop(signal.SIGTERM)
            else:
                private_redis.kill()
            watch_health(process.url, 3)
            took, status = sigterm_and_time(process)
        print(f"\nSIGTERM with the {down} down: exit {status} after {took:.1f}s")
        if down == "broker":
            kafka.start()
        committed = committed_when_loaded(kafka.bootstrap, env["CONSUMER_GROUP"])
        events = read_jsonl(outcomes)
        over = over_committed(committed, events)
        print(f"committed {sum(committed.values())} of {n}; {len(events)} outcomes logged")
        assert not over, f"committed beyond the settled offsets (committed, settled): {over}"
        if down == "redis":
            cut = killed_wall + ADMITTED_BEFORE_KILL_GRACE_S
            late = [e for e in events if e["event"] == "delivered" and e["ts"] > cut]
            assert not late, f"{len(late)} delivered after Redis died, e.g. {late[0]}"
        assert status is not None, f"still running {took:.0f}s after SIGTERM"
        assert took <= SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S, f"exit took {took:.1f}s"
        assert status == 0
