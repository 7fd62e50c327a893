"""Notifications: the message contract, its parsing and validation.

No I/O here. :func:`parse_notification` turns the bytes of one Kafka record (or
one ``POST /send`` body) into a :class:`Notification` or raises
:class:`~pushtrio.contract.errors.InvalidNotification` naming the reason and the field.

Types are strict: a string is never taken for a number or a timestamp, a number
never for a string. The size limits below are the only ones; README documents them.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .errors import InvalidNotification, NotificationTooLarge

MAX_RECORD_BYTES = 64 * 1024
"""Largest accepted record or request body, in bytes."""
MAX_ID_CHARS = 128
MAX_USER_ID_CHARS = 128
MAX_TYPE_CHARS = 64
MAX_TITLE_CHARS = 256
MAX_BODY_CHARS = 4096
MAX_DATA_BYTES = 8 * 1024
"""Largest ``data`` object, measured as compact JSON."""
MAX_TOKENS = 100
"""Most device tokens one notification may name explicitly."""
MAX_TOKEN_CHARS = 512
"""Longest device token (FCM tokens are about 160 characters, APNs tokens 64)."""
TOKEN_PATTERN = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_TOKEN_CHARS}}}")
"""FCM registration tokens and APNs device tokens (hex) both fit."""

PROVIDERS = ("fcm", "apns", "firebase")
"""Every provider a notification may name, in the order ``/health`` and ``/metrics`` list them."""

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@\-]{1,128}")


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    user_id: str
    type: str = "push"
    title: str = ""
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    priority: int = 1
    created_at: datetime | None = None
    expires_at: datetime | None = None
    provider: str = ""
    tokens: tuple[str, ...] = ()
    """Device tokens named by the message (as gorush requests do); empty: the user's
    registered devices."""
    any_provider: bool = False
    """The message named no provider: with real providers, every device of the user
    is a target (``provider`` still routes it through one breaker and one call)."""

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "id": self.id,
            "user_id": self.user_id,
            "type": self.type,
            "title": self.title,
            "body": self.body,
            "data": self.data,
            "priority": self.priority,
            "provider": "" if self.any_provider else self.provider,
        }
        if self.tokens:
            document["tokens"] = list(self.tokens)
        if self.created_at is not None:
            document["created_at"] = format_time(self.created_at)
        if self.expires_at is not None:
            document["expires_at"] = format_time(self.expires_at)
        return orjson.dumps(document)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fallback_id(topic: str, partition: int, offset: int) -> str:
    """A stable id for a record that carries none: the same record, the same id."""
    digest = hashlib.blake2b(f"{topic}/{partition}/{offset}".encode(), digest_size=12)
    return "k-" + digest.hexdigest()


@functools.lru_cache(maxsize=65536)
def provider_for(user_id: str) -> str:
    """The provider a user is routed to when the message names none (stable)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=4).digest()
    return PROVIDERS[int.from_bytes(digest, "big") % len(PROVIDERS)]


def _string(document: dict[str, Any], name: str, limit: int, default: str = "") -> str:
    value = document.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidNotification(f"{name} must be a string", name)
    if len(value) > limit:
        raise NotificationTooLarge(f"{name} is longer than {limit} characters", name)
    return value


def _time(document: dict[str, Any], name: str) -> datetime | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidNotification(f"{name} must be an RFC 3339 string", name)
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", value):
        raise InvalidNotification(f"{name} must be an RFC 3339 timestamp with a zone", name)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
        moment.astimezone(UTC)  # 0001-01-01T00:30+01:00 has no UTC equivalent
    except (ValueError, OverflowError):
        raise InvalidNotification(f"{name} is not a valid date and time", name) from None
    return moment


def _priority(document: dict[str, Any]) -> int:
    value = document.get("priority", 1)
    if value is None:
        return 1
    if isinstance(value, float) and value.is_integer():
        # JSON has one number type: 2.0 is the integer 2 (as JSON Schema says), while
        # 1.5, "2" and true are still refused.
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidNotification("priority must be an integer from 0 to 3", "priority")
    if not 0 <= value <= 3:
        raise InvalidNotification("priority must be from 0 to 3", "priority")
    return value


def validate_document(
    document: object, *, default_id: str | Callable[[], str] | None = None
) -> Notification:
    """Check one decoded JSON value against the message contract."""
    if not isinstance(document, dict):
        raise InvalidNotification("a notification must be a JSON object")
    user_id = document.get("user_id")
    if user_id is None:
        raise InvalidNotification("user_id is required", "user_id")
    if not isinstance(user_id, str):
        raise InvalidNotification("user_id must be a string", "user_id")
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise InvalidNotification("user_id must be 1-128 letters, digits or _.:@-", "user_id")
    message_id = _string(document, "id", MAX_ID_CHARS)
    if not message_id and default_id is not None:
        message_id = default_id if isinstance(default_id, str) else default_id()
    if not message_id:
        raise InvalidNotification("id is required here", "id")
    title = _string(document, "title", MAX_TITLE_CHARS)
    body = _string(document, "body", MAX_BODY_CHARS)
    if not title and not body:
        raise InvalidNotification("title or body is required", "title")
    data = document.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidNotification("data must be an object", "data")
    if data and len(orjson.dumps(data)) > MAX_DATA_BYTES:
        raise NotificationTooLarge(f"data is larger than {MAX_DATA_BYTES} bytes", "data")
    provider = document.get("provider")
    if provider is not None and provider != "" and provider not in PROVIDERS:
        raise InvalidNotification(f"provider must be one of {', '.join(PROVIDERS)}", "provider")
    return Notification(
        id=message_id,
        user_id=user_id,
        type=_string(document, "type", MAX_TYPE_CHARS, "push") or "push",
        title=title,
        body=body,
        data=data,
        priority=_priority(document),
        created_at=_time(document, "created_at"),
        expires_at=_time(document, "expires_at"),
        provider=provider or provider_for(user_id),
        tokens=_tokens(document, named_provider=bool(provider)),
        any_provider=not provider,
    )


def _tokens(document: dict[str, Any], *, named_provider: bool) -> tuple[str, ...]:
    value = document.get("tokens")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise InvalidNotification("tokens must be a list of non-empty strings", "tokens")
    if len(value) > MAX_TOKENS:
        raise NotificationTooLarge(f"tokens holds more than {MAX_TOKENS} tokens", "tokens")
    if any(len(t) > MAX_TOKEN_CHARS for t in value):
        raise NotificationTooLarge(f"a token is longer than {MAX_TOKEN_CHARS} characters", "tokens")
    if not all(TOKEN_PATTERN.fullmatch(t) for t in value):
        raise InvalidNotification("a token may hold only letters, digits and _.:-", "tokens")
    if value and not named_provider:
        raise InvalidNotification("tokens need a provider: name the one they belong to", "tokens")
    return tuple(dict.fromkeys(value))  # in order, each once


def parse_notification(
    raw: bytes | None, *, default_id: str | Callable[[], str] | None = None
) -> Notification:
    """Decode and validate one record value.

    ``default_id`` (or what it returns, when a callable) is used when the message
    has no ``id`` (see :func:`fallback_id`).
    Raises InvalidNotification (or NotificationTooLarge) with the reason and field.
    """
    if raw is None:
        raise InvalidNotification("empty record")
    if len(raw) > MAX_RECORD_BYTES:
        raise NotificationTooLarge(f"record is larger than {MAX_RECORD_BYTES} bytes")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidNotification(f"not valid JSON: {exc}") from None
    return validate_document(document, default_id=default_id)


def _peek(raw: bytes | None, name: str, limit: int) -> str:
    """Best-effort string field ``name`` of a record that failed validation."""
    if not raw or len(raw) > MAX_RECORD_BYTES:
        return ""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(document, dict):
        value = document.get(name)
        if isinstance(value, str) and 0 < len(value) <= limit:
            return value
    return ""


def peek_user_id(raw: bytes | None) -> str:
    """Best-effort user id of a record that failed validation (for the event feed)."""
    return _peek(raw, "user_id", MAX_USER_ID_CHARS)


def peek_id(raw: bytes | None) -> str:
    """Best-effort own id of a record that failed validation (for its dead letter)."""
    return _peek(raw, "id", MAX_ID_CHARS)
