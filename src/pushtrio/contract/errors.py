"""The exception tree of pushtrio.

Every error pushtrio raises on purpose derives from :class:`PushtrioError`::

    PushtrioError
    ├── ConfigError              a setting has a bad value (the CLI exits with status 2)
    ├── InvalidNotification      a record or request body breaks the message contract
    │   └── NotificationTooLarge the record or one of its fields is over a size limit
    ├── BackendError             Kafka or Redis did not answer as expected
    │   ├── BrokerUnavailable    the broker could not take a record (POST /send -> 503)
    │   └── BackendMisconfigured the backend refuses pushtrio's credentials or data
    │                            (wrong password, no permission, WRONGTYPE): retrying
    │                            the same call will not help
    └── ProviderError            a push provider refused or failed a delivery
        ├── TransientProviderError   worth retrying (timeouts, 5xx, throttling)
        └── PermanentProviderError   never retried (unregistered token, bad payload)

Errors of the libraries underneath (kafka-python, redis-py) are translated into
these at the boundary of the module that uses them and raised ``from`` the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outcome import DeviceCounts


class PushtrioError(Exception):
    """Root of every error pushtrio raises on purpose."""


class ConfigError(PushtrioError):
    """An environment variable holds a value pushtrio cannot use."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f"{variable}={value!r}: {reason}")
        self.variable = variable
        self.value = value
        self.reason = reason


class InvalidNotification(PushtrioError):
    """A notification breaks the message contract; ``field`` names the culprit."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class NotificationTooLarge(InvalidNotification):
    """The record, or one of its fields, is over a documented size limit."""


class BackendError(PushtrioError):
    """Kafka or Redis failed or did not answer in time."""


class BrokerUnavailable(BackendError):
    """The broker (or embedded queue) could not accept a record."""


class BackendMisconfigured(BackendError):
    """The backend answers but refuses us: a configuration error, not an outage.

    At start-up it stops the service (exit status 1) before it joins the group; later
    it is reported on /health and, if it lasts, the instance leaves the group.
    """


class ProviderError(PushtrioError):
    """A push provider did not deliver a notification."""

    def __init__(
        self,
        provider: str,
        reason: str,
        *,
        devices: DeviceCounts | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.devices = devices
        """Per-device counts, when the provider delivers to device tokens."""
        self.retry_after_s = retry_after_s
        """How long the provider asked us to wait (its Retry-After), if it did."""


class TransientProviderError(ProviderError):
    """A failure that may pass: retried with backoff."""


class PermanentProviderError(ProviderError):
    """A failure that will not pass: the notification is dead-lettered at once."""


__all__ = [
    "BackendError",
    "BackendMisconfigured",
    "BrokerUnavailable",
    "ConfigError",
    "InvalidNotification",
    "NotificationTooLarge",
    "PermanentProviderError",
    "ProviderError",
    "PushtrioError",
    "TransientProviderError",
]
