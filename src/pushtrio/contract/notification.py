"""Notifications: the message contract, declared once, decoded and checked in one pass.

No I/O here. :class:`NotificationDocument` is the wire format of a Kafka record and
of a ``POST /send`` body alike: msgspec decodes and checks a record against it in C
(types, lengths, patterns, ranges), and ``/openapi.json`` documents it from the same
declaration. :func:`parse_notification` then applies the few rules a schema cannot
say (title or body, the size of ``data``, tokens need a provider) and returns the
:class:`Notification` the pipeline works with, or raises
:class:`~pushtrio.contract.errors.InvalidNotification` naming the reason and the field.

Types are strict: a string is never taken for a number or a timestamp, a number
never for a string; ``2.0`` is the priority 2 (JSON has one number type) while
``1.5``, ``"2"`` and ``true`` are refused. ``null`` is the same as an absent field.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from .errors import InvalidNotification, NotificationTooLarge
from .lanes import DEFAULT_PRIORITY
from .schema import (
    MAX_ID_CHARS,
    MAX_USER_ID_CHARS,
    USER_ID_RULE,
    Timestamp,
    Token,
    UserId,
    invalid,
    text,
)

MAX_RECORD_BYTES: Final = 64 * 1024
"""Largest accepted record or request body, in bytes."""
MAX_TYPE_CHARS: Final = 64
MAX_TITLE_CHARS: Final = 256
MAX_BODY_CHARS: Final = 4096
MAX_DATA_BYTES: Final = 8 * 1024
"""Largest ``data`` object, measured as compact JSON."""
MAX_TOKENS: Final = 100
"""Most device tokens one notification may name explicitly."""

PROVIDERS: Final = ("fcm", "apns", "firebase")
"""Every provider a notification may name, in the order ``/health`` and ``/metrics`` list them."""

ProviderName = Literal["fcm", "apns", "firebase"]
Priority = (
    Annotated[int, msgspec.Meta(ge=0, le=3)]
    | Annotated[float, msgspec.Meta(ge=0, le=3, multiple_of=1)]
)
"""0 (lowest) to 3; a whole number written with a fraction (``2.0``) is accepted."""


class NotificationDocument(msgspec.Struct, kw_only=True):
    """One notification as a producer writes it (a Kafka record, a ``POST /send`` body)."""

    user_id: UserId
    id: Annotated[str, text(MAX_ID_CHARS)] | None = None
    """Its own id (dedup key); absent: the record's fallback id (or a new one for /send)."""
    type: Annotated[str, text(MAX_TYPE_CHARS)] | None = None
    title: Annotated[str, text(MAX_TITLE_CHARS, "title or body is required")] | None = None
    body: Annotated[str, text(MAX_BODY_CHARS, "title or body is required")] | None = None
    data: dict[str, Any] | None = None
    priority: Priority | None = None
    created_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    provider: ProviderName | Literal[""] | None = None
    """Absent or empty: the user's devices of any provider (mock: a stable pick per user)."""
    tokens: Annotated[list[Token], msgspec.Meta(max_length=MAX_TOKENS)] | None = None
    """Device tokens of ``provider`` to send to instead of the user's registered devices."""


SCHEMA_RULES: Final = {
    "": "a notification must be a JSON object",
    "anyOf": [
        {"required": ["title"], "properties": {"title": {"type": "string", "minLength": 1}}},
        {"required": ["body"], "properties": {"body": {"type": "string", "minLength": 1}}},
    ],
    "dependentSchemas": {
        "tokens": {
            "anyOf": [
                {"properties": {"tokens": {"type": "null"}}},
                {"properties": {"tokens": {"maxItems": 0}}},
                {"required": ["provider"], "properties": {"provider": {"enum": list(PROVIDERS)}}},
            ]
        }
    },
    "description": "At least one of title and body (non-empty); tokens need a provider. "
    f"null means absent. Unknown fields are ignored; at most {MAX_RECORD_BYTES} bytes, "
    f"data at most {MAX_DATA_BYTES} bytes as compact JSON.",
}
"""The rules of :func:`checked` as JSON Schema, for ``/openapi.json`` (a struct's
fields cannot say them)."""

RULES: Final = {
    "": "a notification must be a JSON object",
    "user_id": USER_ID_RULE,
    "priority": "priority must be an integer from 0 to 3",
    "provider": f"provider must be one of {', '.join(PROVIDERS)}",
    "created_at": "created_at must be an RFC 3339 timestamp with a zone",
    "expires_at": "expires_at must be an RFC 3339 timestamp with a zone",
    "data": "data must be an object",
    "tokens": "tokens must be a list of tokens of letters, digits and _.:-",
}
"""The reason given for a field that breaks its declared type (README lists them)."""

_decode = msgspec.json.Decoder(NotificationDocument).decode


class Notification(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A checked notification: what the pipeline, the limiter and the providers see."""

    id: str
    user_id: str
    type: str = "push"
    title: str = ""
    body: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)
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
        """The notification as a record value (the wire format, times in UTC)."""
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


def parse_notification(
    raw: bytes | None, *, default_id: str | Callable[[], str] | None = None
) -> Notification:
    """Decode and check one record value (or request body).

    ``default_id`` (or what it returns, when a callable) is used when the message
    has no ``id`` (see :func:`fallback_id`).
    Raises InvalidNotification (or NotificationTooLarge) with the reason and field.
    """
    if raw is None:
        raise InvalidNotification("empty record")
    if len(raw) > MAX_RECORD_BYTES:
        raise NotificationTooLarge(f"record is larger than {MAX_RECORD_BYTES} bytes")
    try:
        document = _decode(raw)
    except msgspec.ValidationError as exc:
        raise invalid(exc, RULES) from None
    except msgspec.DecodeError as exc:
        raise InvalidNotification(f"not valid JSON: {exc}") from None
    return checked(document, default_id)


def checked(
    document: NotificationDocument, default_id: str | Callable[[], str] | None = None
) -> Notification:
    """The rules no schema says, applied to a decoded ``document``."""
    message_id = document.id
    if not message_id and default_id is not None:
        message_id = default_id if isinstance(default_id, str) else default_id()
    if not message_id:
        raise InvalidNotification("id is required here", "id")
    if not document.title and not document.body:
        raise InvalidNotification("title or body is required", "title")
    data = document.data or {}
    if data:
        try:
            size = len(orjson.dumps(data))
        except TypeError:
            # An integer beyond 64 bits: read as a float, as every JSON reader downstream
            # (orjson in the providers) would.
            data = orjson.loads(msgspec.json.encode(data))
            size = len(orjson.dumps(data))
        if size > MAX_DATA_BYTES:
            raise NotificationTooLarge(f"data is larger than {MAX_DATA_BYTES} bytes", "data")
    provider = document.provider
    tokens: tuple[str, ...] = ()
    if document.tokens:
        if not provider:
            raise InvalidNotification(
                "tokens need a provider: name the one they belong to", "tokens"
            )
        tokens = tuple(dict.fromkeys(document.tokens))  # in order, each once
    priority = document.priority
    return Notification(
        id=message_id,
        user_id=document.user_id,
        type=document.type or "push",
        title=document.title or "",
        body=document.body or "",
        data=data,
        priority=DEFAULT_PRIORITY if priority is None else int(priority),
        created_at=_in_utc_range(document.created_at, "created_at"),
        expires_at=_in_utc_range(document.expires_at, "expires_at"),
        provider=provider or provider_for(document.user_id),
        tokens=tokens,
        any_provider=not provider,
    )


def _in_utc_range(moment: datetime | None, name: str) -> datetime | None:
    """``moment``, if it has a UTC equivalent (0001-01-01T00:30+01:00 has none)."""
    if moment is not None:
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise InvalidNotification(f"{name} is not a valid date and time", name) from None
    return moment


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
