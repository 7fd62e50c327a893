"""The harness's process-side helpers: outcome log tailing, service environment, options."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.__main__ import parse_args
from benchmarks.serve import OutcomeTail, service_env


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
