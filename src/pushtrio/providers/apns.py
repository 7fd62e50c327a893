"""Apple Push Notification service (APNs): the provider API over HTTP/2, token-based auth.

One notification to one device token is one HTTP/2 stream::

    POST /3/device/<device token>
    authorization: bearer <ES256 JWT>      apns-topic: <bundle id>
    apns-push-type: alert                  apns-priority: 10 | 5
    apns-expiration: <epoch seconds>       apns-collapse-id: <at most 64 bytes>

    {"aps": {"alert": {"title": "...", "body": "..."}}, "<data key>": ..., "pushtrio_id": "..."}

    200 (header apns-id)   or   4xx/5xx {"reason": "BadDeviceToken"}

Why the choices:

* One connection, many streams. Apple asks senders to keep connections open and
  multiplex rather than open one per notification. The ``httpx`` pool is limited to
  one connection and HTTP/2 only (no HTTP/1.1 fallback, which would serialise
  requests); ``httpcore`` holds streams beyond the server's
  SETTINGS_MAX_CONCURRENT_STREAMS in a semaphore until one closes, so a fan-out
  larger than the limit waits instead of failing or opening a second connection.
* The provider token is a JWT signed with the team's P-256 key (``.p8`` file),
  header ``{"alg": "ES256", "kid": <key id>}``, claims ``{"iss": <team id>, "iat":
  <now>}``. Apple rejects tokens older than an hour and throttles regeneration
  more often than every 20 minutes, so one token is shared by every request and
  replaced after :data:`TOKEN_REFRESH_S` (40 minutes). On 403 ExpiredProviderToken
  the token is replaced (once for all the requests that used the stale one) and
  the request is retried once. Signing is synchronous, so concurrent tasks never
  interleave inside a regeneration.
* ``apns-collapse-id`` is the notification id (hashed when it would not fit), so a
  notification delivered twice after a retry replaces itself on the device.
* Answers are classified into :class:`~.push.TokenState`: 410 and 400
  BadDeviceToken kill the token, other 4xx are permanent for this notification,
  429 and 5xx are transient (with Retry-After when Apple sends one).

Timeouts: every attempt for one token is bounded by ``httpx`` timeouts of
``timeout_s`` on connect, read, write and the wait for a free stream, and by a trio
deadline of 1.5 x ``timeout_s`` around it all, which comes second (both from
:mod:`pushtrio.budgets`). A read timeout of ``httpcore``
is per connection: it marks the connection broken, its other streams fail
transiently too and the next request opens a fresh one. :meth:`ApnsClient.push`
never raises for what the server answers or for transport failures; cancellation
propagates.
"""

from __future__ import annotations

import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h2.exceptions
import httpx
import jwt
import orjson
import trio
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..budgets import send_deadline_s
from ..contract.errors import ConfigError
from ..contract.notification import Notification
from .push import TokenResult, TokenState, collapse_id, parse_retry_after

APPLE_ENDPOINT = "https://api.push.apple.com"
SANDBOX_ENDPOINT = "https://api.sandbox.push.apple.com"
KEY_VARIABLE = "APNS_KEY_FILE"
MAX_PAYLOAD_BYTES = 4096
"""Apple's limit for a regular (non-VoIP) notification payload."""
TOKEN_REFRESH_S = 40 * 60.0
"""A provider token older than this is replaced (Apple: every 20 to 60 minutes)."""
FORCED_REFRESH_EVERY_S = 20 * 60.0
"""Apple answers TooManyProviderTokenUpdates to tokens replaced more often than this."""
MAX_IN_FLIGHT = 100
"""Requests open at once on the connection (Apple allows more; a fan-out beyond waits
for a slot before its request timer starts)."""
CLOSE_TIMEOUT_S = 5.0
KEEP_RETIRED = 2
"""Replaced connections left to finish their streams before they are closed."""
_CONNECTION_FAILURES = ("connection: ", "protocol: ")
IDLE_CONNECTION_S = 600.0
"""An idle connection is kept this long; Apple asks for long-lived connections."""

_DEAD_REASONS = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})


def parse_apns_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in ``key_pem``; ValueError saying what is wrong otherwise."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ValueError("the key is encrypted; APNs keys (.p8) are not") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM private key (expected the .p8 file Apple issued)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
        raise ValueError(f"a {kind} key; APNs needs an EC P-256 key (ES256)")
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"an EC key on {key.curve.name}; APNs needs P-256 (secp256r1)")
    return key


def load_apns_key(path: str) -> bytes:
    """Read and check the APNs auth key at ``path`` (the ``.p8`` file); return its PEM.

    Raises :class:`~pushtrio.contract.errors.ConfigError` for APNS_KEY_FILE when the file
    cannot be read or does not hold an EC P-256 private key, so a bad key stops
    the service at start-up rather than failing every delivery.
    """
    try:
        key_pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(KEY_VARIABLE, path, f"cannot read the key file: {exc.strerror}") from exc
    try:
        parse_apns_key(key_pem)
    except ValueError as exc:
        raise ConfigError(KEY_VARIABLE, path, str(exc)) from None
    return key_pem


def apns_payload(notification: Notification) -> bytes:
    """The JSON body: ``aps.alert`` (title and body, when not empty), the data keys at
    the top level (except ``aps``) and ``pushtrio_id``."""
    alert = {
        name: value
        for name, value in (("title", notification.title), ("body", notification.body))
        if value
    }
    document: dict[str, Any] = {"aps": {"alert": alert}}
    for key, value in notification.data.items():
        if key != "aps":
            document[key] = value
    document["pushtrio_id"] = notification.id
    return orjson.dumps(document)


def apns_headers(notification: Notification, topic: str) -> dict[str, str]:
    """The headers of one notification, but for ``authorization``."""
    headers = {
        "apns-topic": topic,
        "apns-push-type": "alert",
        "apns-priority": "10" if notification.priority >= 2 else "5",
        "apns-collapse-id": collapse_id(notification.id),
    }
    if notification.expires_at is not None:
        headers["apns-expiration"] = str(max(0, int(notification.expires_at.timestamp())))
    return headers


class _ProviderToken:
    """The shared ES256 provider token, replaced when old or when Apple says it expired."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str, clock: Callable[[], float]
    ) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._token = ""
        self._issued_at = 0
        self._forced_at: float | None = None

    def current(self) -> str:
        if not self._token or self._clock() - self._issued_at >= TOKEN_REFRESH_S:
            self._regenerate()
        return self._token

    def expired(self, token: str) -> bool:
        """Apple refused ``token`` as expired: replace it unless another request did;
        False when it was already replaced so within FORCED_REFRESH_EVERY_S (a clock or
        key that is off: more would only draw TooManyProviderTokenUpdates)."""
        if token != self._token:
            return True
        now = self._clock()
        if self._forced_at is not None and now - self._forced_at < FORCED_REFRESH_EVERY_S:
            return False
        self._forced_at = now
        self._regenerate()
        return True

    def _regenerate(self) -> None:
        self._issued_at = int(self._clock())
        self._token = jwt.encode(
            {"iss": self._team_id, "iat": self._issued_at},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )


class ApnsClient:
    """An APNs provider-API client (a :class:`~.push.PushClient` named ``apns``).

    ``key_pem`` is the team's ``.p8`` key (see :func:`load_apns_key`); ValueError
    when it is not an EC P-256 key. ``ca_file`` replaces the system's trust store
    (a private gateway, a test CA). ``clock`` gives the ``iat`` of provider tokens.
    """

    name = "apns"

    def __init__(
        self,
        key_pem: bytes,
        key_id: str,
        team_id: str,
        topic: str,
        endpoint: str = APPLE_ENDPOINT,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token = _ProviderToken(parse_apns_key(key_pem), key_id, team_id, clock)
        self._topic = topic
        self._endpoint = endpoint.rstrip("/")
        self._timeout_s = timeout_s
        self._clock = clock
        self._verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            self._verify = ssl.create_default_context(cafile=ca_file)
        self._warm: dict[int, trio.Lock] = {}
        """Connections whose first request has not been answered yet (by id)."""
        self._http = self._new_connection()
        self._in_flight = trio.CapacityLimiter(MAX_IN_FLIGHT)
        self.reconnects = 0
        """Connections replaced after the server closed one (GOAWAY) or it broke."""
        self._retired: list[httpx.AsyncClient] = []

    def _new_connection(self) -> httpx.AsyncClient:
        http = httpx.AsyncClient(
            http1=False,
            http2=True,
            verify=self._verify,
            timeout=httpx.Timeout(self._timeout_s),
            limits=httpx.Limits(
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=IDLE_CONNECTION_S,
            ),
        )
        self._warm[id(http)] = trio.Lock()
        return http

    async def _replace(self, broken: httpx.AsyncClient) -> None:
        """The connection of ``broken`` failed: later requests go on a new one (once,
        however many requests saw it fail); the old one is closed."""
        if broken is not self._http:
            return
        self._warm.pop(id(broken), None)
        self._http = self._new_connection()
        self.reconnects += 1
        # Not closed at once: after a GOAWAY the server still answers the streams it
        # took. Closed a few replacements later, or with the client.
        self._retired.append(broken)
        if len(self._retired) > KEEP_RETIRED:
            await _close(self._retired.pop(0))

    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        """Send ``notification`` to every token at once, over one connection; one
        result per token, in order. Transport failures become TRANSIENT results;
        cancellation propagates (streams in flight are abandoned)."""
        payload = apns_payload(notification)
        if len(payload) > MAX_PAYLOAD_BYTES:
            return [TokenResult(t, TokenState.PERMANENT, "PayloadTooLarge") for t in tokens]
        headers = apns_headers(notification, self._topic)
        results: list[TokenResult | None] = [None] * len(tokens)

        async def one(i: int, token: str) -> None:
            results[i] = await self._push_one(token, headers, payload)

        async with trio.open_nursery() as nursery:
            for i, token in enumerate(tokens):
                nursery.start_soon(one, i, token)
        return [result for result in results if result is not None]

    async def aclose(self) -> None:
        """Close the connections; the client is not used afterwards."""
        for http in [*self._retired, self._http]:
            await _close(http)
        self._retired.clear()

    async def _push_one(self, token: str, headers: dict[str, str], payload: bytes) -> TokenResult:
        provider_token = self._token.current()
        result = await self._attempt(token, headers, payload, provider_token)
        if result.reason.startswith(_CONNECTION_FAILURES):
            # The server closed the connection (GOAWAY) or it broke: once more, on a
            # new one. A push the server had taken may go twice; its collapse id
            # replaces the first on the device.
            result = await self._attempt(token, headers, payload, provider_token)
        if result.reason == "ExpiredProviderToken":
            if not self._token.expired(provider_token):
                return TokenResult(token, TokenState.TRANSIENT, result.reason)
            result = await self._attempt(token, headers, payload, self._token.current())
            if result.reason == "ExpiredProviderToken":
                # Twice in a row: the clock or the key is off; a later retry may pass.
                result = TokenResult(token, TokenState.TRANSIENT, result.reason)
        return result

    async def _attempt(
        self, token: str, headers: dict[str, str], payload: bytes, provider_token: str
    ) -> TokenResult:
        url = f"{self._endpoint}/3/device/{urllib.parse.quote(token, safe='')}"
        request_headers = {**headers, "authorization": f"bearer {provider_token}"}
        # At most MAX_IN_FLIGHT requests: the clocks below measure the server, not a
        # queue of streams waiting for the connection.
        async with self._in_flight:
            while True:
                http = self._http
                if self._warm.get(id(http)) is None:
                    break
                async with self._warm[id(http)]:
                    # The first request of a connection goes alone: until the server's
                    # SETTINGS are read, httpcore does not know its stream limit (Apple
                    # starts at 1), and a burst would overrun it.
                    if http is self._http and id(http) in self._warm:
                        result = await self._post(http, token, url, request_headers, payload)
                        self._warm.pop(id(http), None)
                        return result
            return await self._post(http, token, url, request_headers, payload)

    async def _post(
        self,
        http: httpx.AsyncClient,
        token: str,
        url: str,
        headers: dict[str, str],
        payload: bytes,
    ) -> TokenResult:
        # Longer than httpx's own timeouts: a read timeout (which drops the connection,
        # stalled streams and all) comes first; a trio cancellation would leave the
        # connection, and its stalled streams, in the pool.
        with trio.move_on_after(send_deadline_s(self._timeout_s)):
            try:
                response = await http.post(url, headers=headers, content=payload)
            except httpx.TimeoutException:
                return TokenResult(token, TokenState.TRANSIENT, "timeout")
            except (httpx.NetworkError, httpx.ProxyError) as exc:
                await self._replace(http)
                return TokenResult(token, TokenState.TRANSIENT, f"connection: {_describe(exc)}")
            except (httpx.ProtocolError, h2.exceptions.H2Error) as exc:
                await self._replace(http)
                return TokenResult(token, TokenState.TRANSIENT, f"protocol: {_describe(exc)}")
            except httpx.RequestError as exc:
                return TokenResult(token, TokenState.TRANSIENT, f"transport: {_describe(exc)}")
            return self._classify(token, response)
        return TokenResult(token, TokenState.TRANSIENT, "timeout")

    def _classify(self, token: str, response: httpx.Response) -> TokenResult:
        status = response.status_code
        if 200 <= status < 300:
            return TokenResult(token, TokenState.ACCEPTED)
        reason = _reason(response)
        if status == 410 or (status == 400 and reason in _DEAD_REASONS):
            return TokenResult(token, TokenState.DEAD, reason)
        if status == 429 or status >= 500:
            retry_after_s = parse_retry_after(response.headers.get("retry-after"), self._clock())
            return TokenResult(token, TokenState.TRANSIENT, reason, retry_after_s)
        if 400 <= status < 500:
            # 403 ExpiredProviderToken is left PERMANENT here; _push_one retries it.
            return TokenResult(token, TokenState.PERMANENT, reason)
        return TokenResult(token, TokenState.TRANSIENT, reason)


async def _close(http: httpx.AsyncClient) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
        await http.aclose()


def _reason(response: httpx.Response) -> str:
    """Apple's ``reason`` from an error body, else the status code."""
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("reason"), str):
        return str(document["reason"])
    return str(response.status_code)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


__all__ = [
    "APPLE_ENDPOINT",
    "SANDBOX_ENDPOINT",
    "ApnsClient",
    "apns_headers",
    "apns_payload",
    "collapse_id",
    "load_apns_key",
    "parse_apns_key",
]
