"""Google service-account credentials and the OAuth2 access tokens FCM HTTP v1 wants.

A service account (the JSON file the Firebase console hands out) signs its own
short-lived assertion; Google's token endpoint swaps it for a bearer access token
(RFC 7523, "JWT bearer grant")::

    POST <token_uri>
    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>

    200 {"access_token": "...", "expires_in": 3599, "token_type": "Bearer"}

The assertion is signed with the account's RSA key (header ``kid`` = the key's id)
and claims ``iss`` = client email, ``scope`` = firebase.messaging, ``aud`` =
token_uri, ``iat`` = now, ``exp`` = now + 1 hour.

Why PyJWT and not google-auth: google-auth refreshes synchronously through
``requests``, which would need a thread hop per refresh and a second HTTP stack. A
JWT and one form POST over the client's own ``httpx.AsyncClient`` are a few lines
and stay trio-native (cancellable, with the same timeouts and connection pool).

:class:`AccessTokens` caches the access token until :data:`REFRESH_MARGIN_S` before
it expires. Refreshes are serialised by a ``trio.Lock``: concurrent senders that
find the token stale wait for the one refresh in flight and then share its result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ..contract.errors import ConfigError, TransientProviderError

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
"""Google accepts assertions valid for at most one hour."""
REFRESH_MARGIN_S = 60.0
"""A cached access token is replaced this long before it expires."""
CREDENTIALS_VARIABLE = "FCM_CREDENTIALS_FILE"

_REQUIRED_FIELDS = (
    "type",
    "project_id",
    "private_key_id",
    "private_key",
    "client_email",
    "token_uri",
)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The parts of a Google service-account key file that FCM HTTP v1 needs."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key: RSAPrivateKey
    token_uri: str
    """Google's is ``https://oauth2.googleapis.com/token``; tests point it at a fake."""

    def assertion(self, now: float) -> str:
        """The signed JWT that :attr:`token_uri` exchanges for an access token."""
        issued_at = int(now)
        claims = {
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_uri,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME_S,
        }
        return jwt.encode(
            claims, self.private_key, algorithm="RS256", headers={"kid": self.private_key_id}
        )


def load_service_account(path: str) -> ServiceAccount:
    """Read a Google service-account JSON key file.

    Raises :class:`~pushtrio.contract.errors.ConfigError` (variable ``FCM_CREDENTIALS_FILE``)
    when the file cannot be read, is not JSON, is not a service-account key, lacks a
    field, or its ``private_key`` is not a PEM RSA key.
    """

    def refuse(reason: str) -> ConfigError:
        return ConfigError(CREDENTIALS_VARIABLE, path, reason)

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise refuse(f"cannot read the service-account file: {exc.strerror or exc}") from exc
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise refuse(f"not a JSON file: {exc}") from exc
    if not isinstance(document, dict):
        raise refuse("not a service-account key: the JSON is not an object")
    for name in _REQUIRED_FIELDS:
        value = document.get(name)
        if not isinstance(value, str) or not value:
            raise refuse(f"the service-account key has no {name!r} (a non-empty string)")
    if document["type"] != "service_account":
        raise refuse(f"type is {document['type']!r}, not 'service_account'")
    token_uri = document["token_uri"]
    if not token_uri.startswith(("https://", "http://")):
        raise refuse("token_uri must be an http(s) URL")
    return ServiceAccount(
        project_id=document["project_id"],
        client_email=document["client_email"],
        private_key_id=document["private_key_id"],
        private_key=_rsa_key(document["private_key"], refuse),
        token_uri=token_uri,
    )


def _rsa_key(pem: str, refuse: Callable[[str], ConfigError]) -> RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise refuse(f"private_key is not a PEM private key: {exc}") from exc
    if not isinstance(key, RSAPrivateKey):
        raise refuse(f"private_key is a {type(key).__name__}, not an RSA key")
    return key


class TokenExchangeFailed(TransientProviderError):
    """The token endpoint did not give an access token (down, 5xx, ``invalid_grant``).

    Never escapes :class:`~pushtrio.providers.fcm.FcmClient`: each token of the call
    becomes a transient result whose reason starts with ``token exchange``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("google-oauth2", f"token exchange: {reason}")


@dataclass(slots=True)
class _Cached:
    value: str
    expires_at: float


class AccessTokens:
    """The current access token of one service account, refreshed on demand.

    Uses (does not own) ``client``; every call is bounded by ``timeout_s``.
    """

    def __init__(
        self,
        account: ServiceAccount,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._client = client
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = trio.Lock()
        self._cached: _Cached | None = None
        self.exchanges = 0
        """Token exchanges attempted so far (successful or not)."""

    async def get(self, *, stale: str | None = None) -> str:
        """A valid access token: the cached one, or a fresh one from the token endpoint.

        ``stale`` is a token the server just refused (a 401): it is not returned again;
        when another task already replaced it, that replacement is returned without a
        second exchange. Raises :class:`TokenExchangeFailed`; cancellation propagates
        (and leaves the cache as it was).
        """
        async with self._lock:
            cached = self._cached
            if (
                cached is not None
                and cached.value != stale
                and self._clock() < cached.expires_at - REFRESH_MARGIN_S
            ):
                return cached.value
            self._cached = await self._exchange()
            return self._cached.value

    def forget(self) -> None:
        """Drop the cached token (the next :meth:`get` exchanges)."""
        self._cached = None

    async def _exchange(self) -> _Cached:
        self.exchanges += 1
        now = self._clock()
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": self.account.assertion(now)}
        response: httpx.Response | None = None
        with trio.move_on_after(self._timeout_s):
            try:
                response = await self._client.post(self.account.token_uri, data=form)
            except httpx.TimeoutException as exc:
                raise TokenExchangeFailed("timeout") from exc
            except httpx.HTTPError as exc:
                raise TokenExchangeFailed(f"connection: {exc!r}") from exc
        if response is None:
            raise TokenExchangeFailed("timeout")
        document = _json_object(response)
        if response.status_code != 200:
            error = document.get("error") or f"HTTP {response.status_code}"
            raise TokenExchangeFailed(f"{response.status_code} {error}")
        value = document.get("access_token")
        expires_in = document.get("expires_in", ASSERTION_LIFETIME_S)
        if not isinstance(value, str) or not value or not isinstance(expires_in, int | float):
            raise TokenExchangeFailed("the token endpoint's answer has no access_token")
        return _Cached(value, now + float(expires_in))


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


__all__ = [
    "FCM_SCOPE",
    "REFRESH_MARGIN_S",
    "AccessTokens",
    "ServiceAccount",
    "TokenExchangeFailed",
    "load_service_account",
]
