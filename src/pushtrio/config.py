"""Settings from the environment.

One frozen :class:`Settings` holds every knob of the service; durations are kept
in seconds and named ``*_s``. Each field is declared once, with its environment
variable, default, parser and help text in the field's metadata (:func:`setting`);
the loader (:func:`load_settings`), :data:`ENVIRONMENT_VARIABLES`, ``pushtrio
config`` and ``pushtrio serve --help`` are all derived from that declaration.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .contract.errors import ConfigError
from .contract.lanes import LaneTopics
from .contract.notification import PROVIDERS

MEMORY_URL = "memory://"
PROVIDER_NAMES = PROVIDERS
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S

_HOST_PORT = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")
_TOPIC = r"[A-Za-z0-9._\-]{1,249}"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

T = TypeVar("T")


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


def format_duration(seconds: float) -> str:
    """The Go-style spelling of ``seconds`` (``1h30m``, ``5ms``) that parses back exactly."""
    candidates = [f"{seconds!r}s", repr(seconds)]
    if seconds == int(seconds):
        hours, rest = divmod(int(seconds), 3600)
        parts = zip((hours, *divmod(rest, 60)), "hms", strict=True)
        candidates.insert(0, "".join(f"{n}{unit}" for n, unit in parts if n) or "0s")
    elif seconds < 1:
        candidates[:0] = [f"{round(seconds / _UNIT_S[u])}{u}" for u in ("ms", "us", "ns")]
    return next(c for c in candidates if _parses_to(c, seconds))


def _parses_to(text: str, seconds: float) -> bool:
    try:
        return parse_duration(text) == seconds
    except ValueError:
        return False


# Kinds of value: how a non-blank variable is parsed (ValueError: the reason it is
# refused) and how a value is shown again (`pushtrio config`, help, README defaults).


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    parse: Callable[[str], T]
    show: Callable[[T], str] = str
    blank: Literal["default", "refused", "kept"] = "default"
    """What a blank value means; "refused" and "kept" hand it to ``parse``."""


def integer(low: int, high: int) -> Kind[int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return Kind(parse)


def optional_integer(low: int, high: int) -> Kind[int | None]:
    """An integer, or None when unset or blank (the default of such a setting)."""
    return Kind(integer(low, high).parse, lambda value: "" if value is None else str(value))


def duration(*, zero_ok: bool = False, maximum: float = HOUR_S) -> Kind[float]:
    def parse(raw: str) -> float:
        value = parse_duration(raw)
        if not zero_ok and value <= 0:
            raise ValueError("expected a duration above zero")
        if value > maximum:
            raise ValueError(f"expected a duration of at most {_format_limit(maximum)}")
        return value

    return Kind(parse, format_duration)


def _format_limit(seconds: float) -> str:
    if seconds >= DAY_S and seconds % DAY_S == 0:
        return f"{seconds / HOUR_S:.0f}h ({seconds / DAY_S:.0f} days)"
    return f"{seconds / HOUR_S:.0f}h" if seconds >= HOUR_S else f"{seconds:g}s"


def _parse_rate(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return value


def _parse_failure_rate(raw: str) -> float:
    value = _parse_rate(raw)
    if value == 0:
        raise ValueError("expected a number above 0, at most 1")
    return value


def choice(*values: str) -> Kind[str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in values:
            raise ValueError(f"expected one of {', '.join(values)}")
        return value

    return Kind(parse)


RATE = Kind(_parse_rate, repr)
_FAILURE_RATE = Kind(_parse_failure_rate, repr)
TEXT = Kind(str.strip)
VERBATIM = Kind(lambda raw: raw, blank="kept")
"""Taken as it is, blank and surrounding spaces included (a password may have them)."""


def kafka_name(pattern: str | None = None) -> Kind[str]:
    """A name of something in Kafka: blank is a mistake (a template left empty)."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if not value:
            raise ValueError("must not be blank (unset it for the default)")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ValueError(f"expected a value matching {pattern}")
        return value

    return Kind(parse, blank="refused")


def _parse_optional_topic(raw: str) -> str:
    """A topic name, or blank for none (the feature it names is off)."""
    value = raw.strip()
    if value and not re.fullmatch(_TOPIC, value):
        raise ValueError(f"expected a value matching {_TOPIC}, or blank for none")
    return value


def _parse_host(raw: str) -> str:
    """An IPv4 or IPv6 address, or a host name (RFC 1123)."""
    value = raw.strip()
    if ":" in value or all(c.isdigit() or c == "." for c in value):
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise ValueError("expected an IP address or a host name") from None
    elif not _HOSTNAME.fullmatch(value):
        raise ValueError("expected an IP address or a host name")
    return value


def _parse_brokers(raw: str) -> tuple[str, ...]:
    brokers = tuple(part.strip() for part in raw.split(",") if part.strip())
    if brokers in ((), (MEMORY_URL,)):
        return (MEMORY_URL,)
    if not all(_HOST_PORT.fullmatch(broker) for broker in brokers):
        raise ValueError("expected host:port[,host:port...] or memory://")
    return brokers


def _parse_redis_addr(raw: str) -> str:
    value = raw.strip()
    if value != MEMORY_URL and not _HOST_PORT.fullmatch(value):
        raise ValueError("expected host:port or memory://")
    return value


def _parse_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise ValueError("expected an http:// or https:// URL")
    return value


URL = Kind(_parse_url)


def _parse_log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return value


_BROKERS = Kind(_parse_brokers, ",".join)
_OPTIONAL_TOPIC = Kind(_parse_optional_topic, blank="kept")
_REDIS_ADDR = Kind(_parse_redis_addr)
_HOST = Kind(_parse_host)
_LOG_LEVEL = Kind(_parse_log_level)


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: the single declaration the rest is derived from."""

    name: str
    default: Any
    kind: Kind[Any]
    help: str
    secret: bool = False
    fallback: str | None = None
    """Another variable whose value is the default of this one."""
    template: str | None = None
    """The default made of other variables' values (``{KAFKA_TOPIC}.urgent``)."""

    @property
    def default_text(self) -> str:
        """The default as documented (README, ``serve --help``)."""
        if self.template:
            return self.template.replace("{", "<").replace("}", ">")
        return self.fallback or self.kind.show(self.default) or "empty"


_VARIABLE = "pushtrio.variable"
_COMPOUND = "pushtrio.variables"


def setting(
    env: str,
    default: T,
    kind: Kind[T],
    help: str,
    *,
    secret: bool = False,
    template: str | None = None,
) -> T:
    """A :class:`Settings` field read from the variable ``env``; ``template`` makes its
    default from variables declared before it."""
    variable = Variable(env, default, kind, help, secret, template=template)
    return dataclasses.field(default=default, metadata={_VARIABLE: variable})


# The one compound setting: PROVIDER_<NAME>_SUCCESS_RATE, each falling back to
# PROVIDER_SUCCESS_RATE, fill the single field provider_success_rates.
_SHARED_RATE = Variable("PROVIDER_SUCCESS_RATE", 0.95, RATE, "mock providers' success probability")
_RATE_VARIABLES = (
    _SHARED_RATE,
    *(
        Variable(
            f"PROVIDER_{provider.upper()}_SUCCESS_RATE",
            _SHARED_RATE.default,
            RATE,
            f"success probability of the mock {provider} provider",
            fallback=_SHARED_RATE.name,
        )
        for provider in PROVIDER_NAMES
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the service. Build it with :func:`load_settings`."""

    kafka_brokers: tuple[str, ...] = setting(
        "KAFKA_BROKERS", (MEMORY_URL,), _BROKERS, "comma-separated host:port list, or memory://"
    )
    kafka_topic: str = setting(
        "KAFKA_TOPIC", "notifications", kafka_name(_TOPIC), "topic consumed (and written by /send)"
    )
    consumer_group: str = setting(
        "CONSUMER_GROUP", "notification-service", kafka_name(), "consumer group id"
    )
    redis_addr: str = setting(
        "REDIS_ADDR", MEMORY_URL, _REDIS_ADDR, "host:port of Redis, or memory:// (embedded)"
    )
    redis_password: str = setting(
        "REDIS_PASSWORD", "", VERBATIM, "Redis password (taken verbatim)", secret=True
    )
    redis_db: int = setting("REDIS_DB", 0, integer(0, 10_000), "Redis database number")
    rate_limit_per_user: int = setting(
        "RATE_LIMIT_PER_USER", 10, integer(1, 1_000_000), "notifications per user per window"
    )
    rate_limit_window_s: float = setting(
        "RATE_LIMIT_WINDOW", 60.0, duration(maximum=30 * DAY_S), "sliding rate-limit window"
    )
    worker_count: int = setting("WORKER_COUNT", 10, integer(1, 10_000), "worker tasks")
    max_queue_size: int = setting(
        "MAX_QUEUE_SIZE", 1000, integer(1, 10_000_000), "records between reader and workers"
    )
    retry_attempts: int = setting(
        "RETRY_ATTEMPTS", 3, integer(0, 20), "retry tiers after the first attempt, if transient"
    )
    retry_delay_s: float = setting(
        "RETRY_DELAY", 1.0, duration(zero_ok=True), "base delay, doubled per retry (max 30s)"
    )
    rate_limit_policy: str = setting(
        "RATE_LIMIT_POLICY",
        "drop",
        choice("drop", "defer"),
        "drop: rate_limited at once; defer: deliver when the window frees a slot",
    )
    defer_max_s: float = setting(
        "DEFER_MAX", HOUR_S, duration(maximum=30 * DAY_S), "longest deferral, else rate_limited"
    )
    breaker_failure_rate: float = setting(
        "BREAKER_FAILURE_RATE", 0.5, _FAILURE_RATE, "failed share of calls that opens a breaker"
    )
    breaker_min_calls: int = setting(
        "BREAKER_MIN_CALLS", 20, integer(1, 100_000), "calls in the window before it is judged"
    )
    breaker_open_for_s: float = setting(
        "BREAKER_OPEN_FOR", 30.0, duration(), "how long an open breaker refuses calls"
    )
    breaker_max_park_s: float = setting(
        "BREAKER_MAX_PARK",
        HOUR_S,
        duration(maximum=30 * DAY_S),
        "longest wait for an open breaker, else failed",
    )
    port: int = setting("PORT", 8080, integer(0, 65535), "HTTP port (0 picks a free one)")
    host: str = setting("HOST", "127.0.0.1", _HOST, "bind address: an IP address or a host name")
    log_level: str = setting(
        "LOG_LEVEL", "info", _LOG_LEVEL, "debug, info, warning, error or critical"
    )
    shutdown_timeout_s: float = setting(
        "SHUTDOWN_TIMEOUT", 30.0, duration(), "time to finish in-flight work on SIGTERM/SIGINT"
    )
    release_after_s: float = setting(
        "RELEASE_AFTER", 30.0, duration(), "leave the group once a backend has refused this long"
    )
    dlq_topic: str = setting(
        "DLQ_TOPIC", "notifications.dlq", kafka_name(_TOPIC), "dead-letter topic"
    )
    urgent_topic: str = setting(
        "URGENT_TOPIC",
        "notifications.urgent",
        _OPTIONAL_TOPIC,
        "the urgent lane's topic; blank: no urgent lane",
        template="{KAFKA_TOPIC}.urgent",
    )
    urgent_priority: int = setting(
        "URGENT_PRIORITY", 3, integer(1, 3), "notifications of this priority or more are urgent"
    )
    dedup_ttl_s: float = setting(
        "DEDUP_TTL", DAY_S, duration(maximum=30 * DAY_S), "how long delivered ids are remembered"
    )
    provider_success_rates: tuple[tuple[str, float], ...] = dataclasses.field(
        default=tuple((provider, _SHARED_RATE.default) for provider in PROVIDER_NAMES),
        metadata={_COMPOUND: _RATE_VARIABLES},
    )
    provider_latency_s: float = setting(
        "PROVIDER_LATENCY", 0.005, duration(zero_ok=True), "mock providers' latency per call"
    )
    provider_timeout_s: float = setting(
        "PROVIDER_TIMEOUT", 10.0, duration(), "limit on one provider call; timeouts are transient"
    )
    provider_seed: int | None = setting(
        "PROVIDER_SEED", None, optional_integer(0, 2**63 - 1), "makes mock providers deterministic"
    )
    admin_token: str = setting(
        "ADMIN_TOKEN", "", TEXT, "Bearer token needed by all but /health and /", secret=True
    )
    outcome_log: str = setting(
        "OUTCOME_LOG", "", TEXT, "path: append one JSON line per outcome (an audit trail)"
    )
    mock_provider_journal: str = setting(
        "MOCK_PROVIDER_JOURNAL", "", TEXT, "path: '<provider> <id>' per accepted notification"
    )
    fcm_credentials_file: str = setting(
        "FCM_CREDENTIALS_FILE", "", TEXT, "path: a Google service-account JSON; fcm, firebase real"
    )
    fcm_endpoint: str = setting(
        "FCM_ENDPOINT", "https://fcm.googleapis.com", URL, "FCM HTTP v1 base URL"
    )
    apns_key_file: str = setting(
        "APNS_KEY_FILE", "", TEXT, "path: an APNs .p8 signing key; makes apns real"
    )
    apns_key_id: str = setting("APNS_KEY_ID", "", TEXT, "the key's id (10 characters)")
    apns_team_id: str = setting("APNS_TEAM_ID", "", TEXT, "the Apple developer team id")
    apns_topic: str = setting("APNS_TOPIC", "", TEXT, "the app's bundle id (apns-topic)")
    apns_endpoint: str = setting(
        "APNS_ENDPOINT", "https://api.push.apple.com", URL, "APNs base URL (sandbox: api.sandbox)"
    )
    apns_ca_file: str = setting(
        "APNS_CA_FILE", "", TEXT, "path: CA bundle to trust for APNS_ENDPOINT (a private gateway)"
    )
    notices: tuple[str, ...] = ()
    """Warnings about valid but doubtful values, logged when the service starts."""

    @property
    def kafka_embedded(self) -> bool:
        return self.kafka_brokers == (MEMORY_URL,)

    @property
    def lanes(self) -> LaneTopics:
        return LaneTopics(self.kafka_topic, self.urgent_topic, self.urgent_priority)

    @property
    def redis_embedded(self) -> bool:
        return self.redis_addr == MEMORY_URL

    @property
    def real_providers(self) -> bool:
        """Whether any provider delivers for real (then notifications go to devices)."""
        return bool(self.fcm_credentials_file or self.apns_key_file)

    def success_rate(self, provider: str) -> float:
        return dict(self.provider_success_rates)[provider]

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (handy in tests)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


VARIABLES: tuple[Variable, ...] = tuple(
    variable
    for field in dataclasses.fields(Settings)
    for variable in ((field.metadata[_VARIABLE],) if _VARIABLE in field.metadata else ())
    + field.metadata.get(_COMPOUND, ())
)
"""Every variable :func:`load_settings` reads, in the order of the fields."""

ENVIRONMENT_VARIABLES = tuple(variable.name for variable in VARIABLES)
"""The names of :data:`VARIABLES` (checked against the docs by tests)."""


def _read(env: Mapping[str, str]) -> dict[str, Any]:
    """The value of every variable, by name; ConfigError for the first bad one."""
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        raw = env.get(variable.name)
        if raw is None or (variable.kind.blank == "default" and not raw.strip()):
            if variable.template:
                value = variable.template.format_map(values)
            elif variable.fallback:
                value = values[variable.fallback]
            else:
                value = variable.default
        else:
            try:
                value = variable.kind.parse(raw)
            except ValueError as exc:
                raise ConfigError(variable.name, raw, str(exc)) from None
        values[variable.name] = value
    return values


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``env`` (default: ``os.environ``).

    Raises ConfigError for the first variable whose value cannot be used.
    """
    env = os.environ if env is None else env
    values = _read(env)
    fields: dict[str, Any] = {
        field.name: values[field.metadata[_VARIABLE].name]
        for field in dataclasses.fields(Settings)
        if _VARIABLE in field.metadata
    }
    # The compound setting (see _RATE_VARIABLES) and the notices are the special cases.
    fields["provider_success_rates"] = tuple(
        (provider, values[variable.name])
        for provider, variable in zip(PROVIDER_NAMES, _RATE_VARIABLES[1:], strict=True)
    )
    fields["notices"] = _notices(env)
    settings = Settings(**fields)
    if settings.urgent_topic in (settings.kafka_topic, settings.dlq_topic):
        raise ConfigError(
            "URGENT_TOPIC", settings.urgent_topic, "must differ from KAFKA_TOPIC and DLQ_TOPIC"
        )
    if settings.apns_key_file:
        for name, value in (
            ("APNS_KEY_ID", settings.apns_key_id),
            ("APNS_TEAM_ID", settings.apns_team_id),
            ("APNS_TOPIC", settings.apns_topic),
        ):
            if not value:
                raise ConfigError(name, "", "required with APNS_KEY_FILE")
    return settings


def effective_environment(env: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """``(NAME, value)`` for every variable as parsed from ``env``, secrets masked (``***``).

    Raises ConfigError like :func:`load_settings`.
    """
    values = _read(os.environ if env is None else env)
    shown = []
    for variable in VARIABLES:
        text = variable.kind.show(values[variable.name])
        shown.append((variable.name, "***" if variable.secret and text else text))
    return tuple(shown)


def _notices(env: Mapping[str, str]) -> tuple[str, ...]:
    """Settings that are valid but probably not meant: warned about at start-up."""
    notices = []
    token = env.get("ADMIN_TOKEN")
    if token is not None and not token.strip():
        notices.append(
            "ADMIN_TOKEN is set but blank: the admin endpoints and the feed need no token"
        )
    return tuple(notices)
