"""Settings from the environment.

One frozen :class:`Settings` holds every knob of the service; durations are kept
in seconds and named ``*_s``. :func:`load_settings` reads an environment mapping
and raises :class:`~pushtrio.errors.ConfigError` naming the first bad variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .provider_names import PROVIDERS

MEMORY_URL = "memory://"
PROVIDER_NAMES = PROVIDERS
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")

_HOST_PORT = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``500ms``, ``1h30m``) or plain seconds into seconds.

    Raises ValueError on anything else, including negative values.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0 or seconds != seconds or seconds == float("inf"):
            raise ValueError("duration must be a finite number >= 0")
        return seconds
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError("expected a duration such as 500ms, 30s, 1m or 1h30m")
    return total


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the service. Build it with :func:`load_settings`."""

    kafka_brokers: tuple[str, ...] = (MEMORY_URL,)
    kafka_topic: str = "notifications"
    consumer_group: str = "notification-service"
    redis_addr: str = MEMORY_URL
    redis_password: str = ""
    redis_db: int = 0
    rate_limit_per_user: int = 10
    rate_limit_window_s: float = 60.0
    worker_count: int = 10
    max_queue_size: int = 1000
    retry_attempts: int = 3
    retry_delay_s: float = 1.0
    port: int = 8080
    host: str = "127.0.0.1"
    log_level: str = "info"
    shutdown_timeout_s: float = 30.0
    release_after_s: float = 30.0
    dlq_topic: str = "notifications.dlq"
    dedup_ttl_s: float = 24 * 3600.0
    provider_success_rates: tuple[tuple[str, float], ...] = tuple(
        (name, 0.95) for name in PROVIDER_NAMES
    )
    provider_latency_s: float = 0.005
    provider_timeout_s: float = 10.0
    provider_seed: int | None = None
    admin_token: str = ""
    outcome_log: str = ""
    mock_provider_journal: str = ""
    notices: tuple[str, ...] = ()
    """Warnings about valid but doubtful values, logged when the service starts."""

    @property
    def kafka_embedded(self) -> bool:
        return self.kafka_brokers == (MEMORY_URL,)

    @property
    def redis_embedded(self) -> bool:
        return self.redis_addr == MEMORY_URL

    def success_rate(self, provider: str) -> float:
        return dict(self.provider_success_rates)[provider]

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (handy in tests)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, "expected an integer") from None
    if not low <= value <= high:
        raise ConfigError(name, raw, f"expected an integer from {low} to {high}")
    return value


HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


def _duration(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    positive: bool,
    maximum: float = HOUR_S,
) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(name, raw, str(exc)) from None
    if positive and value <= 0:
        raise ConfigError(name, raw, "expected a duration above zero")
    if value > maximum:
        raise ConfigError(name, raw, f"expected a duration of at most {_format_s(maximum)}")
    return value


def _format_s(seconds: float) -> str:
    if seconds >= DAY_S and seconds % DAY_S == 0:
        return f"{seconds / HOUR_S:.0f}h ({seconds / DAY_S:.0f} days)"
    return f"{seconds / HOUR_S:.0f}h" if seconds >= HOUR_S else f"{seconds:g}s"


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, "expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(name, raw, "expected a number from 0 to 1")
    return value


def _text(
    env: Mapping[str, str],
    name: str,
    default: str,
    *,
    pattern: str | None = None,
    blank_ok: bool = True,
) -> str:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip() == "":
        if blank_ok:
            return default
        raise ConfigError(name, raw, "must not be blank (unset it for the default)")
    value = raw.strip()
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(name, raw, f"expected a value matching {pattern}")
    return value


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _host(env: Mapping[str, str]) -> str:
    """HOST: an IPv4 or IPv6 address, or a host name (RFC 1123)."""
    raw = env.get("HOST", "")
    value = raw.strip() or "127.0.0.1"
    looks_numeric = all(c.isdigit() or c == "." for c in value)
    if ":" in value or looks_numeric:
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise ConfigError("HOST", raw, "expected an IP address or a host name") from None
    elif not _HOSTNAME.fullmatch(value):
        raise ConfigError("HOST", raw, "expected an IP address or a host name")
    return value


def _brokers(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("KAFKA_BROKERS", MEMORY_URL)
    brokers = tuple(part.strip() for part in raw.split(",") if part.strip())
    if brokers in ((), (MEMORY_URL,)):
        return (MEMORY_URL,)
    for broker in brokers:
        if not _HOST_PORT.fullmatch(broker):
            raise ConfigError(
                "KAFKA_BROKERS", raw, "expected host:port[,host:port...] or memory://"
            )
    return brokers


def _redis_addr(env: Mapping[str, str]) -> str:
    raw = env.get("REDIS_ADDR", MEMORY_URL).strip() or MEMORY_URL
    if raw != MEMORY_URL and not _HOST_PORT.fullmatch(raw):
        raise ConfigError("REDIS_ADDR", raw, "expected host:port or memory://")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``env`` (default: ``os.environ``).

    Raises ConfigError for the first variable whose value cannot be used.
    """
    env = os.environ if env is None else env
    default_rate = _rate(env, "PROVIDER_SUCCESS_RATE", 0.95)
    rates = tuple(
        (name, _rate(env, f"PROVIDER_{name.upper()}_SUCCESS_RATE", default_rate))
        for name in PROVIDER_NAMES
    )
    log_level = _text(env, "LOG_LEVEL", "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", env["LOG_LEVEL"], f"expected one of {', '.join(LOG_LEVELS)}")
    seed_raw = env.get("PROVIDER_SEED", "").strip()
    topic_pattern = r"[A-Za-z0-9._\-]{1,249}"
    return Settings(
        kafka_brokers=_brokers(env),
        kafka_topic=_text(
            env, "KAFKA_TOPIC", "notifications", pattern=topic_pattern, blank_ok=False
        ),
        consumer_group=_text(env, "CONSUMER_GROUP", "notification-service", blank_ok=False),
        redis_addr=_redis_addr(env),
        redis_password=env.get("REDIS_PASSWORD", ""),
        redis_db=_int(env, "REDIS_DB", 0, 0, 10_000),
        rate_limit_per_user=_int(env, "RATE_LIMIT_PER_USER", 10, 1, 1_000_000),
        rate_limit_window_s=_duration(
            env, "RATE_LIMIT_WINDOW", 60.0, positive=True, maximum=30 * DAY_S
        ),
        worker_count=_int(env, "WORKER_COUNT", 10, 1, 10_000),
        max_queue_size=_int(env, "MAX_QUEUE_SIZE", 1000, 1, 10_000_000),
        retry_attempts=_int(env, "RETRY_ATTEMPTS", 3, 0, 100),
        retry_delay_s=_duration(env, "RETRY_DELAY", 1.0, positive=False),
        port=_int(env, "PORT", 8080, 0, 65535),
        host=_host(env),
        log_level=log_level,
        shutdown_timeout_s=_duration(env, "SHUTDOWN_TIMEOUT", 30.0, positive=True),
        release_after_s=_duration(env, "RELEASE_AFTER", 30.0, positive=True),
        dlq_topic=_text(
            env, "DLQ_TOPIC", "notifications.dlq", pattern=topic_pattern, blank_ok=False
        ),
        dedup_ttl_s=_duration(env, "DEDUP_TTL", DAY_S, positive=True, maximum=30 * DAY_S),
        provider_success_rates=rates,
        provider_latency_s=_duration(env, "PROVIDER_LATENCY", 0.005, positive=False),
        provider_timeout_s=_duration(env, "PROVIDER_TIMEOUT", 10.0, positive=True),
        provider_seed=None if not seed_raw else _int(env, "PROVIDER_SEED", 0, 0, 2**63 - 1),
        admin_token=env.get("ADMIN_TOKEN", "").strip(),
        outcome_log=env.get("OUTCOME_LOG", "").strip(),
        mock_provider_journal=env.get("MOCK_PROVIDER_JOURNAL", "").strip(),
        notices=_notices(env),
    )


def _notices(env: Mapping[str, str]) -> tuple[str, ...]:
    """Settings that are valid but probably not meant: warned about at start-up."""
    notices = []
    token = env.get("ADMIN_TOKEN")
    if token is not None and not token.strip():
        notices.append(
            "ADMIN_TOKEN is set but blank: the admin endpoints and the feed need no token"
        )
    return tuple(notices)


ENVIRONMENT_VARIABLES = (
    "KAFKA_BROKERS",
    "KAFKA_TOPIC",
    "CONSUMER_GROUP",
    "REDIS_ADDR",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "RATE_LIMIT_PER_USER",
    "RATE_LIMIT_WINDOW",
    "WORKER_COUNT",
    "MAX_QUEUE_SIZE",
    "RETRY_ATTEMPTS",
    "RETRY_DELAY",
    "PORT",
    "HOST",
    "LOG_LEVEL",
    "SHUTDOWN_TIMEOUT",
    "RELEASE_AFTER",
    "DLQ_TOPIC",
    "DEDUP_TTL",
    "PROVIDER_SUCCESS_RATE",
    *(f"PROVIDER_{name.upper()}_SUCCESS_RATE" for name in PROVIDER_NAMES),
    "PROVIDER_LATENCY",
    "PROVIDER_TIMEOUT",
    "PROVIDER_SEED",
    "ADMIN_TOKEN",
    "OUTCOME_LOG",
    "MOCK_PROVIDER_JOURNAL",
)
"""Every variable :func:`load_settings` reads (checked against the docs by a test)."""
