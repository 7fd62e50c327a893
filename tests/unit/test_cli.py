"""The command line: version, help, and one clear line for a bad setting."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pushtrio import __version__
from pushtrio.cli.main import main, setup_logging
from pushtrio.config import ENVIRONMENT_VARIABLES, VARIABLES


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No setting leaks in from the outer environment; logging is restored afterwards."""
    for variable in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    pushtrio_level = logging.getLogger("pushtrio").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("pushtrio").setLevel(pushtrio_level)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"pushtrio {__version__}"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["deliver"])
    assert caught.value.code == 2
    assert "deliver" in capsys.readouterr().err


def test_bad_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_COUNT", "lots")
    assert main(["serve"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "WORKER_COUNT" in lines[0]
    assert "'lots'" in lines[0]


@pytest.mark.parametrize(
    ("variable", "extra", "says"),
    [
        ("FCM_CREDENTIALS_FILE", {}, "project_id"),
        (
            "APNS_KEY_FILE",
            {"APNS_KEY_ID": "K", "APNS_TEAM_ID": "T", "APNS_TOPIC": "com.example"},
            "not a PEM private key",
        ),
    ],
)
def test_unusable_credentials_stop_serve_with_status_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
    variable: str,
    extra: dict[str, str],
    says: str,
) -> None:
    assert isinstance(tmp_path, os.PathLike)
    credentials = os.path.join(tmp_path, "credentials")
    with open(credentials, "w") as file:
        file.write('{"type": "service_account"}')
    monkeypatch.setenv("PORT", "0")
    monkeypatch.setenv(variable, credentials)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"error"' in x]
    assert line["msg"].startswith(f"cannot start: invalid setting {variable}=")
    assert says in line["msg"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RETRY_DELAY", "soon"), ("PORT", "99999"), ("KAFKA_BROKERS", "nohost")],
)
def test_bad_setting_fails_every_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    for command in (["serve"], ["config"], ["produce", "-q"], ["replay", "-q"], ["watch"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert variable in err
        assert repr(value) in err


def test_config_prints_every_variable_as_parsed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "0")
    monkeypatch.setenv("WORKER_COUNT", " 4 ")
    monkeypatch.setenv("SHUTDOWN_TIMEOUT", "90")
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert [line.partition("=")[0] for line in lines] == list(ENVIRONMENT_VARIABLES)
    shown = dict(line.split("=", 1) for line in lines)
    assert shown["PORT"] == "0"
    assert shown["WORKER_COUNT"] == "4"
    assert shown["SHUTDOWN_TIMEOUT"] == "1m30s"
    assert shown["KAFKA_BROKERS"] == "memory://"
    assert shown["DEDUP_TTL"] == "24h"
    assert shown["REDIS_PASSWORD"] == shown["ADMIN_TOKEN"] == ""


def test_config_masks_the_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "REDIS_PASSWORD=***\n" in out
    assert "ADMIN_TOKEN=***\n" in out
    assert "hunter2" not in out
    assert "s3cret" not in out


def test_config_warns_about_a_blank_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", " ")
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    assert "ADMIN_TOKEN=\n" in captured.out
    assert "ADMIN_TOKEN is set but blank" in captured.err


def test_config_refuses_a_bad_setting_as_serve_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_COUNT", "abc")
    assert main(["serve"]) == 2
    serve = capsys.readouterr()
    assert main(["config"]) == 2
    config = capsys.readouterr()
    assert config.out == serve.out == ""
    assert config.err == serve.err
    assert config.err.strip() == "pushtrio: invalid setting WORKER_COUNT='abc': expected an integer"


def test_serve_help_lists_the_variables_with_defaults_and_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for variable in VARIABLES:
        assert f"  {variable.name} (default: {variable.default_text})\n" in out
        assert f"      {variable.help}\n" in out
    assert "RATE_LIMIT_WINDOW (default: 1m)" in out
    assert "PROVIDER_FCM_SUCCESS_RATE (default: PROVIDER_SUCCESS_RATE)" in out
    assert "REDIS_PASSWORD (default: empty)" in out


def test_produce_to_the_embedded_queue_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "memory://")
    assert main(["produce", "-n", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pushtrio produce: ")
    assert "KAFKA_BROKERS" in err
    assert "/send" in err


def test_watch_with_an_unknown_event_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "--event", "delivered,exploded"]) == 2
    err = capsys.readouterr().err
    assert "exploded" in err


def test_python_dash_m_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pushtrio", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pushtrio")
    for command in ("serve", "config", "produce", "replay", "watch"):
        assert command in result.stdout


def serve_on_a_taken_port() -> subprocess.CompletedProcess[str]:
    """Run ``python -m pushtrio serve`` with PORT set to a port this test listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        return subprocess.run(
            [sys.executable, "-m", "pushtrio", "serve"],
            env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def test_serve_on_a_port_in_use_exits_1_with_one_line() -> None:
    result = serve_on_a_taken_port()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert [line for line in lines if "cannot start" in line] == lines
    assert json.loads(lines[0])["level"] == "error"


def test_serve_on_a_port_in_use_names_the_cause() -> None:
    result = serve_on_a_taken_port()
    [line] = result.stderr.strip().splitlines()
    assert "already in use" in json.loads(line)["msg"]


def test_a_failed_leave_of_a_member_already_gone_is_not_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("info")
        coordinator = logging.getLogger("kafka.coordinator")
        coordinator.error(
            "LeaveGroup request for member %s / group instance %s failed with error: %s",
            "m-1",
            None,
            "[Error 25] UnknownMemberIdError",
        )
        coordinator.error("Heartbeat failed: something else")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["msg"][:10]) for line in lines] == [
        ("info", "LeaveGroup"),
        ("error", "Heartbeat "),
    ]
