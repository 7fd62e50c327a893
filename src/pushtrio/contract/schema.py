"""The building blocks of every declared shape, and msgspec's errors made ours.

The structs of :mod:`.notification` and :mod:`.api` are built from the
constrained types below; msgspec checks them in C while it decodes, and the same
declarations give the JSON Schema of ``/openapi.json``. :func:`invalid` turns
msgspec's error into an :class:`~.errors.InvalidNotification` that names the field,
with the reason written for people (``rules``) when one is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Final

import msgspec

from .errors import InvalidNotification, NotificationTooLarge

END: Final = r"$(?!\n)"
"""The end of the string in a pattern: Python's ``$`` also matches before a final
newline (msgspec searches with Python's ``re``); the look-ahead refuses it, and the
pattern stays a valid ECMA regex for the JSON Schema."""

MAX_ID_CHARS: Final = 128
MAX_USER_ID_CHARS: Final = 128
MAX_TOKEN_CHARS: Final = 512
"""Longest device token (FCM tokens are about 160 characters, APNs tokens 64)."""

USER_ID_PATTERN: Final = re.compile(rf"[A-Za-z0-9_.:@\-]{{1,{MAX_USER_ID_CHARS}}}")
TOKEN_PATTERN: Final = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_TOKEN_CHARS}}}")
"""FCM registration tokens and APNs device tokens (hex) both fit."""

USER_ID_RULE: Final = "user_id must be 1-128 letters, digits or _.:@-"
TOKEN_RULE: Final = f"token must be 1-{MAX_TOKEN_CHARS} letters, digits or _.:-"

UserId = Annotated[
    str,
    msgspec.Meta(pattern=f"^{USER_ID_PATTERN.pattern}{END}", description=USER_ID_RULE),
]
Token = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_TOKEN_CHARS,
        pattern=rf"^[A-Za-z0-9_.:\-]+{END}",
        description="a device token: letters, digits or _.:-",
    ),
]
Timestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 date and time with a zone (Z or +hh:mm)"),
]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]


def text(max_chars: int, description: str = "") -> msgspec.Meta:
    """The constraint of a free-text field of at most ``max_chars`` characters."""
    return msgspec.Meta(max_length=max_chars, description=description or None)


_AT = re.compile(r" - at `\$\.?([A-Za-z_]\w*)?")
_UNKNOWN = re.compile(r"contains unknown field `(\w+)`")
_MISSING = re.compile(r"missing required field `(\w+)`")
_TOO_LONG = re.compile(r"Expected `(str|array|object)` of length <= (\d+)")


def invalid(
    error: msgspec.ValidationError, rules: Mapping[str, str] = {}, fields: Sequence[str] = ()
) -> InvalidNotification:
    """msgspec's ``error`` as an InvalidNotification naming its top-level field.

    A value over a length limit is :class:`~.errors.NotificationTooLarge`. The reason
    is written for people: ``rules[field]`` (``rules[field + "[]"]`` for an item of a
    list, ``rules[""]`` for the body as a whole) when given, else msgspec's words with
    the field. An unknown field is named with the ``fields`` expected.
    """
    message = str(error)
    unknown = _UNKNOWN.search(message)
    if unknown:
        name = unknown.group(1)
        return InvalidNotification(f"unknown field {name} (expected {', '.join(fields)})", name)
    missing = _MISSING.search(message)
    if missing:
        field = missing.group(1)
        return InvalidNotification(f"{field} is required", field)
    found = _AT.search(message)
    if found is None or found.group(1) is None:
        return InvalidNotification(rules.get("", _plain(message.partition(" - at ")[0])))
    field = found.group(1)
    key = f"{field}[]" if message[found.end() : found.end() + 1] == "[" else field
    too_long = _TOO_LONG.match(message)
    if too_long:
        kind, limit = too_long.groups()
        if key in rules and key != field:
            return NotificationTooLarge(rules[key], field)
        if kind == "array":
            return NotificationTooLarge(f"{field} holds more than {limit} items", field)
        name = f"an item of {field}" if key != field else field
        return NotificationTooLarge(f"{name} is longer than {limit} characters", field)
    detail = _plain(message[: found.start()])
    return InvalidNotification(rules.get(key, rules.get(field, f"{field}: {detail}")), field)


def _plain(message: str) -> str:
    """msgspec's message without its code quotes: "Expected `str`" -> "expected str"."""
    message = message.replace("`", "")
    if message.startswith("Expected object"):
        return "the body must be a JSON object"
    return message[:1].lower() + message[1:]
