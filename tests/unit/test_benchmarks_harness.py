"""The harness's process-side helpers: outcome log tailing, service environment, options."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.__main__ import parse_args
from benchmarks.lanes import SEND_INTERVAL_S, SEND_SPREAD, Send, run_figures, send_interval_s
from benchmarks.serve import BenchmarkError, OutcomeTail, service_env


def test_outcome_tail_reads_only_whole_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.jsonl"
    tail = OutcomeTail(path)
    assert tail.read_new() == []  # not written yet
    path.write_bytes(b'{"id": "a", "ts": 1.0}\n{"id": "b", "ts"')
    assert [o["id"] for o in tail.read_new()] == ["a"]
    with open(path, "ab") as stream:
        stream.write(b': 2.0}\n{"id": "c", "ts": 3.0}\n')
    assert [o["id"] for o in tail.read_new()] == ["b", "c"]
    assert tail.read_new() == []


def test_service_env_defaults_and_overrides(tmp_path: Path) -> None:
    env = service_env(
        kafka="127.0.0.1:1",
        redis="127.0.0.1:2",
        redis_db=9,
        topic="t",
        group="g",
        outcome_log=tmp_path / "o.jsonl",
        overrides={"PROVIDER_LATENCY": "5ms"},
    )
    assert env["PROVIDER_LATENCY"] == "5ms"
    assert env["PROVIDER_SUCCESS_RATE"] == "1"
    assert env["REDIS_DB"] == "9"
    assert env["DLQ_TOPIC"] == "t.dlq"
    assert env["PORT"] == "0"  # the kernel picks the port when serve binds


def test_quick_defaults_and_explicit_messages() -> None:
    quick = parse_args(["--quick"])
    assert quick.messages == 100_000
    assert quick.latency_seconds == 10.0
    full = parse_args(["--messages", "20000", "--serve-env", "WORKER_COUNT=20"])
    assert full.messages == 20_000
    assert full.latency_seconds == 20.0
    assert full.rates == [1000.0, 5000.0]
    assert full.serve_env_map == {"WORKER_COUNT": "20"}


@pytest.mark.parametrize(
    "argv", [["--phases", "nope"], ["--serve-env", "NOVALUE"], ["--messages", "5"]]
)
def test_bad_options_exit_with_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        parse_args(argv)
    assert exc_info.value.code == 2


def test_lanes_is_a_phase() -> None:
    assert parse_args(["--phases", "lanes"]).phases == ["lanes"]


def test_lanes_sends_fit_in_the_drain() -> None:
    assert send_interval_s(10.0, 100) == SEND_INTERVAL_S
    assert send_interval_s(1.0, 100) == pytest.approx(SEND_SPREAD * 1.0 / 100)
    assert send_interval_s(1.0, 0) == SEND_INTERVAL_S


def test_lanes_figures_from_the_outcome_log() -> None:
    def outcome(key: str, ts: float) -> dict[str, object]:
        return {"id": key, "event": "delivered", "ts": ts}

    backlog = [outcome(f"b{i}", 100.0 + i * 0.5) for i in range(5)]  # 100.0 to 102.0
    urgent = [outcome("u0", 100.2), outcome("u1", 102.5), outcome("u0", 103.0)]
    sends = {"u0": Send(100.1, 100.15), "u1": Send(101.0, 102.1)}
    run = run_figures("lanes-on", backlog + urgent, sends, 99.0, {"PROVIDER_LATENCY": "5ms"})
    assert run.backlog.records == 5
    assert run.backlog.seconds == pytest.approx(2.0)
    assert run.backlog.rate == pytest.approx(2.5)
    assert run.urgent is not None
    # The first outcome of an id counts: u0 took 100 ms, u1 1,500 ms.
    assert run.urgent.max_ms == pytest.approx(1500.0)
    assert run.urgent.p50_ms == pytest.approx(800.0)
    assert run.post is not None
    assert run.post.max_ms == pytest.approx(1100.0)
    assert run.accepted_during_drain == 1  # u1 was accepted after the last backlog outcome
    assert run.startup_s == pytest.approx(1.0)
    assert run.outcomes == {"delivered": 8}


def test_lanes_figures_need_every_urgent_outcome() -> None:
    outcomes = [{"id": "b0", "event": "delivered", "ts": 1.0}]
    with pytest.raises(BenchmarkError, match="1 urgent notifications had no outcome"):
        run_figures("lanes-on", outcomes, {"u0": Send(0.5, 0.6)}, 0.0, {})
