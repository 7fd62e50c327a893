"""Settings from the environment: durations, defaults, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pushtrio.config import (
    ENVIRONMENT_VARIABLES,
    MEMORY_URL,
    PROVIDER_NAMES,
    VARIABLES,
    Settings,
    effective_environment,
    format_duration,
    load_settings,
    parse_duration,
)
from pushtrio.contract.errors import ConfigError
from pushtrio.contract.lanes import LaneTopics

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1h0m1s", 3601.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("2", 2.0),
        ("0.25", 0.25),
        ("0", 0.0),
        ("0s", 0.0),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration_accepts_go_style_and_plain_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "-1", "-1s", "5x", "1m-", "s", "1h 30m", "1d", "inf", "nan", "ms500"],
)
def test_parse_duration_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_duration(text)


def test_defaults_are_those_of_the_design_table() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.kafka_brokers == (MEMORY_URL,)
    assert settings.kafka_embedded
    assert settings.kafka_topic == "notifications"
    assert settings.consumer_group == "notification-service"
    assert settings.redis_addr == MEMORY_URL
    assert settings.redis_embedded
    assert settings.redis_password == ""
    assert settings.redis_db == 0
    assert settings.rate_limit_per_user == 10
    assert settings.rate_limit_window_s == 60.0
    assert settings.worker_count == 10
    assert settings.max_queue_size == 1000
    assert settings.retry_attempts == 3
    assert settings.retry_delay_s == 1.0
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.log_level == "info"
    assert settings.shutdown_timeout_s == 30.0
    assert settings.dlq_topic == "notifications.dlq"
    assert settings.dedup_ttl_s == 24 * 3600.0
    assert dict(settings.provider_success_rates) == dict.fromkeys(PROVIDER_NAMES, 0.95)
    assert settings.provider_latency_s == pytest.approx(0.005)
    assert settings.provider_timeout_s == 10.0
    assert settings.admin_token == ""


NAMES = ("KAFKA_TOPIC", "DLQ_TOPIC", "CONSUMER_GROUP")
"""Names of things in Kafka: blank is a mistake (a template left empty), not "default"."""


def test_blank_values_mean_the_default_except_names() -> None:
    env = {name: "  " for name in ENVIRONMENT_VARIABLES if name not in (*NAMES, "URGENT_TOPIC")}
    env.update(REDIS_PASSWORD="")  # taken verbatim, not stripped
    assert load_settings(env).replace(notices=()) == Settings()


def test_the_urgent_topic_follows_the_topic_and_blank_turns_the_lane_off() -> None:
    assert load_settings({}).lanes == LaneTopics("notifications", "notifications.urgent", 3)
    lanes = load_settings({"KAFKA_TOPIC": "orders", "URGENT_PRIORITY": "2"}).lanes
    assert lanes == LaneTopics("orders", "orders.urgent", 2)
    assert (lanes.topic_for(1), lanes.topic_for(2), lanes.topic_for(3)) == (
        "orders",
        "orders.urgent",
        "orders.urgent",
    )
    off = load_settings({"URGENT_TOPIC": " "}).lanes
    assert not off.enabled
    assert off.topic_for(3) == "notifications"
    assert dict(effective_environment({"KAFKA_TOPIC": "orders"}))["URGENT_TOPIC"] == (
        "orders.urgent"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"URGENT_TOPIC": "notifications"}, "must differ from KAFKA_TOPIC and DLQ_TOPIC"),
        ({"URGENT_TOPIC": "a b"}, "expected a value matching"),
        ({"URGENT_PRIORITY": "0"}, "expected an integer from 1 to 3"),
    ],
)
def test_bad_lane_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_admin_token_is_stripped() -> None:
    # A token pasted from a file brings its newline; the header never carries it.
    assert load_settings({"ADMIN_TOKEN": "  s3cret\n"}).admin_token == "s3cret"
    assert load_settings({"ADMIN_TOKEN": " \t\n"}).admin_token == ""


def test_redis_password_is_taken_verbatim() -> None:
    assert load_settings({"REDIS_PASSWORD": " pw \n"}).redis_password == " pw \n"


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "KAFKA_BROKERS": "kafka1:9092, kafka2:9093 ,",
            "KAFKA_TOPIC": "pushes",
            "CONSUMER_GROUP": "group-a",
            "REDIS_ADDR": "redis.local:6380",
            "REDIS_PASSWORD": "pw",
            "REDIS_DB": "3",
            "RATE_LIMIT_PER_USER": "25",
            "RATE_LIMIT_WINDOW": "1h30m",
            "WORKER_COUNT": " 4 ",
            "MAX_QUEUE_SIZE": "50",
            "RETRY_ATTEMPTS": "0",
            "RETRY_DELAY": "250ms",
            "PORT": "0",
            "HOST": "0.0.0.0",
            "LOG_LEVEL": "DEBUG",
            "SHUTDOWN_TIMEOUT": "5",
            "DLQ_TOPIC": "pushes.dlq",
            "DEDUP_TTL": "2h",
            "PROVIDER_LATENCY": "0",
            "PROVIDER_TIMEOUT": "2s",
            "PROVIDER_SEED": "42",
            "ADMIN_TOKEN": "token",
        }
    )
    assert settings.kafka_brokers == ("kafka1:9092", "kafka2:9093")
    assert not settings.kafka_embedded
    assert settings.kafka_topic == "pushes"
    assert settings.consumer_group == "group-a"
    assert settings.redis_addr == "redis.local:6380"
    assert not settings.redis_embedded
    assert settings.redis_password == "pw"
    assert settings.redis_db == 3
    assert settings.rate_limit_per_user == 25
    assert settings.rate_limit_window_s == 5400.0
    assert settings.worker_count == 4
    assert settings.max_queue_size == 50
    assert settings.retry_attempts == 0
    assert settings.retry_delay_s == 0.25
    assert settings.port == 0
    assert settings.host == "0.0.0.0"
    assert settings.log_level == "debug"
    assert settings.shutdown_timeout_s == 5.0
    assert settings.dlq_topic == "pushes.dlq"
    assert settings.dedup_ttl_s == 7200.0
    assert settings.provider_latency_s == 0.0
    assert settings.provider_timeout_s == 2.0
    assert settings.provider_seed == 42
    assert settings.admin_token == "token"


@pytest.mark.parametrize(
    ("raw", "brokers"),
    [
        ("memory://", (MEMORY_URL,)),
        ("", (MEMORY_URL,)),
        (" memory:// ", (MEMORY_URL,)),
        ("localhost:9092", ("localhost:9092",)),
        ("a:1,b:2,c:3", ("a:1", "b:2", "c:3")),
        ("[::1]:9092", ("[::1]:9092",)),
    ],
)
def test_kafka_brokers_list(raw: str, brokers: tuple[str, ...]) -> None:
    assert load_settings({"KAFKA_BROKERS": raw}).kafka_brokers == brokers


def test_per_provider_success_rates_fall_back_to_the_shared_one() -> None:
    settings = load_settings({"PROVIDER_SUCCESS_RATE": "0.5", "PROVIDER_APNS_SUCCESS_RATE": "1"})
    assert dict(settings.provider_success_rates) == {"fcm": 0.5, "apns": 1.0, "firebase": 0.5}
    assert settings.success_rate("apns") == 1.0
    assert settings.success_rate("firebase") == 0.5


def test_per_provider_success_rate_without_the_shared_one() -> None:
    settings = load_settings({"PROVIDER_FIREBASE_SUCCESS_RATE": "0"})
    assert dict(settings.provider_success_rates) == {"fcm": 0.95, "apns": 0.95, "firebase": 0.0}


@pytest.mark.parametrize("level", ["debug", "info", "warning", "warn", "error", "critical"])
def test_log_levels(level: str) -> None:
    assert load_settings({"LOG_LEVEL": level.upper()}).log_level == level


def test_seed_absent_means_unseeded() -> None:
    assert load_settings({}).provider_seed is None
    assert load_settings({"PROVIDER_SEED": "0"}).provider_seed == 0


BAD_VALUES = [
    ("URGENT_TOPIC", "no spaces"),
    ("URGENT_PRIORITY", "0"),
    ("URGENT_PRIORITY", "urgent"),
    ("REDIS_DB", "one"),
    ("REDIS_DB", "-1"),
    ("REDIS_DB", "10001"),
    ("RATE_LIMIT_PER_USER", "0"),
    ("RATE_LIMIT_PER_USER", "ten"),
    ("RATE_LIMIT_PER_USER", "2.5"),
    ("RATE_LIMIT_WINDOW", "0"),
    ("RATE_LIMIT_WINDOW", "0s"),
    ("RATE_LIMIT_WINDOW", "-1m"),
    ("RATE_LIMIT_WINDOW", "a minute"),
    ("WORKER_COUNT", "lots"),
    ("WORKER_COUNT", "0"),
    ("WORKER_COUNT", "10001"),
    ("MAX_QUEUE_SIZE", "0"),
    ("MAX_QUEUE_SIZE", "1k"),
    ("RETRY_ATTEMPTS", "-1"),
    ("RETRY_ATTEMPTS", "21"),
    ("RATE_LIMIT_POLICY", "queue"),
    ("DEFER_MAX", "later"),
    ("DEFER_MAX", "0"),
    ("BREAKER_FAILURE_RATE", "0"),
    ("BREAKER_FAILURE_RATE", "1.5"),
    ("BREAKER_MIN_CALLS", "0"),
    ("BREAKER_MIN_CALLS", "many"),
    ("BREAKER_OPEN_FOR", "0"),
    ("BREAKER_MAX_PARK", "-1s"),
    ("RETRY_ATTEMPTS", "three"),
    ("RETRY_DELAY", "soon"),
    ("RETRY_DELAY", "-1s"),
    ("RETRY_DELAY", "5x"),
    ("PORT", "65536"),
    ("PORT", "-1"),
    ("PORT", "http"),
    ("SHUTDOWN_TIMEOUT", "0"),
    ("SHUTDOWN_TIMEOUT", "1m-"),
    ("RELEASE_AFTER", "0"),
    ("RELEASE_AFTER", "never"),
    ("DEDUP_TTL", "1d"),
    ("DEDUP_TTL", "0"),
    ("PROVIDER_SUCCESS_RATE", "1.5"),
    ("PROVIDER_SUCCESS_RATE", "-0.1"),
    ("PROVIDER_SUCCESS_RATE", "high"),
    ("PROVIDER_SUCCESS_RATE", "nan"),
    ("PROVIDER_FCM_SUCCESS_RATE", "2"),
    ("PROVIDER_APNS_SUCCESS_RATE", "x"),
    ("PROVIDER_FIREBASE_SUCCESS_RATE", "95%"),
    ("PROVIDER_LATENCY", "fast"),
    ("PROVIDER_LATENCY", "-5ms"),
    ("PROVIDER_TIMEOUT", "0"),
    ("PROVIDER_TIMEOUT", "abc"),
    ("PROVIDER_SEED", "-1"),
    ("PROVIDER_SEED", "seed"),
    ("LOG_LEVEL", "loud"),
    ("KAFKA_BROKERS", "localhost"),
    ("KAFKA_BROKERS", "memory://,kafka:9092"),
    ("KAFKA_BROKERS", "kafka:9092;other:9092"),
    ("REDIS_ADDR", "localhost"),
    ("REDIS_ADDR", "redis://localhost:6379"),
    ("KAFKA_TOPIC", "bad topic"),
    ("KAFKA_TOPIC", "  "),
    ("DLQ_TOPIC", "a/b"),
    ("DLQ_TOPIC", ""),
    ("CONSUMER_GROUP", " "),
    ("HOST", "999.1.1.1"),
    ("HOST", "1.2.3"),
    ("HOST", "bad host"),
    ("HOST", "::zz"),
    ("PROVIDER_LATENCY", "1e9"),
    ("PROVIDER_TIMEOUT", "2h"),
    ("RETRY_DELAY", "1e6"),
    ("SHUTDOWN_TIMEOUT", "90m"),
    ("RELEASE_AFTER", "5h"),
    ("DEDUP_TTL", "1000h"),
    ("RATE_LIMIT_WINDOW", "800h"),
    ("FCM_ENDPOINT", "fcm.googleapis.com"),
    ("APNS_ENDPOINT", "ftp://api.push.apple.com"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_bad_value_names_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    error = caught.value
    assert error.variable == variable
    assert error.value == value
    assert error.reason
    assert str(error).startswith(f"{variable}={value!r}: ")


def test_every_numeric_and_duration_variable_has_a_bad_value_case() -> None:
    text_only = {
        "REDIS_PASSWORD",
        "ADMIN_TOKEN",
        "OUTCOME_LOG",
        "MOCK_PROVIDER_JOURNAL",
        "FCM_CREDENTIALS_FILE",
        "APNS_KEY_FILE",
        "APNS_KEY_ID",
        "APNS_TEAM_ID",
        "APNS_TOPIC",
        "APNS_CA_FILE",
    }
    assert {v for v, _ in BAD_VALUES} == set(ENVIRONMENT_VARIABLES) - text_only


def test_replace_returns_a_changed_copy() -> None:
    settings = Settings()
    changed = settings.replace(port=0)
    assert changed.port == 0
    assert settings.port == 8080
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "127.0.0.1", "::", "::1", "[::1]", "localhost", "a.b-c.d"]
)
def test_good_hosts_are_taken(host: str) -> None:
    assert load_settings({"HOST": host}).host == host


def test_a_blank_admin_token_is_allowed_but_noticed() -> None:
    assert load_settings({}).notices == ()
    settings = load_settings({"ADMIN_TOKEN": " "})
    assert settings.admin_token == ""
    assert len(settings.notices) == 1
    assert "ADMIN_TOKEN is set but blank" in settings.notices[0]


def test_long_durations_within_their_limits_are_taken() -> None:
    settings = load_settings(
        {"PROVIDER_LATENCY": "1h", "DEDUP_TTL": "720h", "RATE_LIMIT_WINDOW": "720h"}
    )
    assert settings.provider_latency_s == 3600.0
    assert settings.dedup_ttl_s == settings.rate_limit_window_s == 720 * 3600.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.005, "5ms"),
        (0.00025, "250us"),
        (parse_duration("100ns"), "100ns"),
        (1e-7, "1e-07"),  # not a whole number of ns in floating point
        (0.25, "250ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (30.0, "30s"),
        (60.0, "1m"),
        (3601.0, "1h1s"),
        (5400.0, "1h30m"),
        (24 * 3600.0, "24h"),
        (1e-10, "1e-10"),
    ],
)
def test_format_duration_is_go_style_and_parses_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_each_setting_is_declared_once_in_the_table() -> None:
    assert len(set(ENVIRONMENT_VARIABLES)) == len(ENVIRONMENT_VARIABLES) == len(VARIABLES)
    assert all(variable.help for variable in VARIABLES)
    assert {v.name for v in VARIABLES if v.secret} == {"REDIS_PASSWORD", "ADMIN_TOKEN"}
    # Every field is read from a variable but the notices; the field order is the table's.
    declared = [f.name for f in dataclasses.fields(Settings) if f.metadata]
    assert declared == [f.name for f in dataclasses.fields(Settings) if f.name != "notices"]
    assert ENVIRONMENT_VARIABLES[:3] == ("KAFKA_BROKERS", "KAFKA_TOPIC", "CONSUMER_GROUP")
    assert ENVIRONMENT_VARIABLES[-1] == "APNS_CA_FILE"
    # Still a frozen, slotted dataclass: no instance __dict__.
    assert "__dict__" not in dir(Settings())
    assert Settings(worker_count=3).worker_count == 3


def test_effective_environment_round_trips_and_masks_secrets() -> None:
    env = {
        "KAFKA_BROKERS": " a:1, b:2 ,",
        "RATE_LIMIT_WINDOW": "5400",
        "RETRY_DELAY": "0.25",
        "PROVIDER_LATENCY": "1500us",
        "LOG_LEVEL": "WARN",
        "PROVIDER_SUCCESS_RATE": ".5",
        "PROVIDER_APNS_SUCCESS_RATE": "1",
        "PROVIDER_SEED": " 7 ",
        "REDIS_PASSWORD": " pw ",
        "ADMIN_TOKEN": " t ",
    }
    shown = dict(effective_environment(env))
    assert list(shown) == list(ENVIRONMENT_VARIABLES)
    assert shown["KAFKA_BROKERS"] == "a:1,b:2"
    assert shown["RATE_LIMIT_WINDOW"] == "1h30m"
    assert shown["RETRY_DELAY"] == "250ms"
    assert shown["PROVIDER_LATENCY"] == "1500us"
    assert shown["LOG_LEVEL"] == "warn"
    assert shown["PROVIDER_SUCCESS_RATE"] == shown["PROVIDER_FCM_SUCCESS_RATE"] == "0.5"
    assert shown["PROVIDER_APNS_SUCCESS_RATE"] == "1.0"
    assert shown["PROVIDER_SEED"] == "7"
    assert shown["REDIS_PASSWORD"] == shown["ADMIN_TOKEN"] == "***"
    assert shown["OUTCOME_LOG"] == ""
    # The printed values, fed back, give the same settings (secrets aside).
    secrets = {"REDIS_PASSWORD", "ADMIN_TOKEN"}
    again = {name: value for name, value in shown.items() if name not in secrets}
    assert load_settings(again) == load_settings(env).replace(redis_password="", admin_token="")


def test_effective_environment_leaves_unset_secrets_empty() -> None:
    shown = dict(effective_environment({"ADMIN_TOKEN": "  "}))
    assert shown["ADMIN_TOKEN"] == shown["REDIS_PASSWORD"] == ""
    assert shown["PROVIDER_SEED"] == ""
    with pytest.raises(ConfigError, match="WORKER_COUNT"):
        effective_environment({"WORKER_COUNT": "0"})


def readme_configuration_rows() -> list[tuple[list[str], str]]:
    """``([VARIABLE, ...], default)`` per row of the README's configuration table."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("| ").split(" | ")]
        rows.append((re.findall(r"`([A-Z0-9_]+)`", cells[0]), cells[1].replace("`", "")))
    return rows


def test_readme_configuration_table_matches_the_settings_table() -> None:
    rows = readme_configuration_rows()
    documented = [(name, default) for names, default in rows for name in names]
    names = [name for name, _ in documented]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert set(names) == set(ENVIRONMENT_VARIABLES)
    assert dict(documented) == {v.name: v.default_text for v in VARIABLES}


@pytest.mark.parametrize("missing", ["APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC"])
def test_an_apns_key_needs_its_id_team_and_topic(missing: str) -> None:
    env = {
        "APNS_KEY_FILE": "key.p8",
        "APNS_KEY_ID": "ABC123DEFG",
        "APNS_TEAM_ID": "TEAM123456",
        "APNS_TOPIC": "com.example.app",
    }
    del env[missing]
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == missing
    assert "APNS_KEY_FILE" in caught.value.reason


def test_real_providers_are_on_only_with_credentials() -> None:
    assert not load_settings({}).real_providers
    assert load_settings({"FCM_CREDENTIALS_FILE": "sa.json"}).real_providers
    assert load_settings({"FCM_ENDPOINT": "http://127.0.0.1:9/"}).fcm_endpoint == (
        "http://127.0.0.1:9"
    )
