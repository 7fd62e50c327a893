"""Firebase Cloud Messaging over the HTTP v1 API (the legacy API is shut down).

One request per device token::

    POST {endpoint}/v1/projects/{project_id}/messages:send
    Authorization: Bearer <OAuth2 access token>
    {"message": {"token": T, "notification": {...}, "data": {...},
                 "android": {...}, "apns": {"headers": {...}}}}

    200 {"name": "projects/<project>/messages/<id>"}
    4xx/5xx {"error": {"code", "status", "message", "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": ...},
        {"@type": "type.googleapis.com/google.rpc.BadRequest",
         "fieldViolations": [{"field": "message.token", ...}]}]}}

The access token comes from the service account (:mod:`.google_oauth`, PyJWT rather
than google-auth, whose refresh is synchronous). It is fetched once per
:meth:`FcmClient.push` before the tokens fan out, so a token endpoint that is down
costs one exchange and makes every token of the call transient. A 401 from
messages:send refreshes it (once, shared by concurrent sends) and retries that token
once; a second 401 is transient ``UNAUTHENTICATED``.

How FCM's answers map to :class:`~.push.TokenState` (the reason is FCM's
``errorCode``, else its ``status``):

=======================================================  ==========
200                                                      ACCEPTED
UNREGISTERED (404)                                       DEAD
INVALID_ARGUMENT about ``message.token``                 DEAD
other INVALID_ARGUMENT, SENDER_ID_MISMATCH, other 4xx    PERMANENT
QUOTA_EXCEEDED (429), UNAVAILABLE, INTERNAL, other 5xx   TRANSIENT (+ Retry-After)
a timeout, a connection error                            TRANSIENT
=======================================================  ==========
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson
import trio

from ..budgets import send_deadline_s
from ..contract.notification import Notification
from .google_oauth import AccessTokens, ServiceAccount, TokenExchangeFailed, load_service_account
from .push import TokenResult, TokenState, collapse_id, parse_retry_after

FCM_ENDPOINT = "https://fcm.googleapis.com"
HIGH_PRIORITY = 2
"""Notifications of this priority or above go out as FCM ``HIGH`` / APNs ``10``."""
APNS_COLLAPSE_ID_MAX_BYTES = 64

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_TRANSIENT_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})


class FcmClient:
    """An FCM HTTP v1 client for one Firebase project (a :class:`~.push.PushClient`).

    ``name`` is the provider name notifications use (``fcm`` or ``firebase``: both
    are FCM HTTP v1). Each HTTP call (a send, a token exchange) is bounded by
    ``timeout_s``; at most ``max_in_flight`` sends are in flight at once, over at most
    ``max_connections`` connections: Google's endpoint speaks HTTP/2 (ALPN), so a few
    connections multiplex them all, and httpcore's pool scans every connection on
    every request, and its queue too (measured against the HTTP/1.1 fake: 3,000 sends
    took 16.8 s over 100 connections, 14.3 s over 8 with 100 in flight, 8-10 s over 8
    with 8-32 in flight).
    ``clock`` (epoch seconds) dates access tokens and expiries; tests inject it.
    """

    def __init__(
        self,
        name: str,
        account: ServiceAccount,
        endpoint: str = FCM_ENDPOINT,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        *,
        max_connections: int = 8,
        max_in_flight: int = 32,
    ) -> None:
        self.name = name
        self.account = account
        self.send_url = f"{endpoint.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._timeout_s = timeout_s
        self._clock = clock
        self._http = httpx.AsyncClient(
            http2=True,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections),
        )
        self._in_flight = trio.CapacityLimiter(max_in_flight)
        self._tokens = AccessTokens(account, self._http, timeout_s=timeout_s, clock=clock)

    @property
    def token_exchanges(self) -> int:
        """OAuth2 token exchanges attempted so far."""
        return self._tokens.exchanges

    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        """Send ``notification`` to every token concurrently; one result per token, in order.

        Never raises for what Google answers or for a broken connection (those are
        results); cancellation propagates and abandons the sends in flight.
        """
        if not tokens:
            return []
        try:
            access_token = await self._tokens.get()
        except TokenExchangeFailed as exc:
            return [TokenResult(token, TokenState.TRANSIENT, exc.reason) for token in tokens]
        message = fcm_message(notification, self._clock())
        results = [TokenResult(token, TokenState.TRANSIENT, "not sent") for token in tokens]

        async def send(i: int) -> None:
            results[i] = await self._send(tokens[i], message, access_token)

        async with trio.open_nursery() as nursery:
            for i in range(len(tokens)):
                nursery.start_soon(send, i)
        return results

    async def aclose(self) -> None:
        """Close the connection pool; the client is not used afterwards."""
        await self._http.aclose()

    async def _send(self, token: str, message: dict[str, Any], access_token: str) -> TokenResult:
        body = orjson.dumps({"message": {"token": token, **message}})
        try:
            response = await self._post(body, access_token)
            if response.status_code == 401:
                access_token = await self._tokens.get(stale=access_token)
                response = await self._post(body, access_token)
                if response.status_code == 401:
                    return TokenResult(token, TokenState.TRANSIENT, "UNAUTHENTICATED")
        except TokenExchangeFailed as exc:
            return TokenResult(token, TokenState.TRANSIENT, exc.reason)
        except _Deadline:
            return TokenResult(token, TokenState.TRANSIENT, "timeout")
        except httpx.TimeoutException:
            return TokenResult(token, TokenState.TRANSIENT, "timeout")
        except httpx.HTTPError as exc:
            detail = str(exc) or type(exc).__name__
            return TokenResult(token, TokenState.TRANSIENT, f"connection: {detail}")
        return token_result(token, response, self._clock())

    async def _post(self, body: bytes, access_token: str) -> httpx.Response:
        headers = {
            "authorization": f"Bearer {access_token}",
            "content-type": "application/json; charset=UTF-8",
        }
        async with self._in_flight:
            # httpx's timeouts are per phase (connect, each read...); this bounds the
            # whole. It is longer than httpx's own, so that a read timeout (which drops
            # the connection) comes first: a trio cancellation leaves it in the pool.
            with trio.move_on_after(send_deadline_s(self._timeout_s)):
                return await self._http.post(self.send_url, content=body, headers=headers)
        raise _Deadline


MAX_TTL_S = 28 * 24 * 3600
"""FCM's longest ``ttl`` (28 days); a later ``expires_at`` is cut to it."""


class _Deadline(Exception):
    """A send took longer than ``timeout_s`` in all."""


def fcm_message(notification: Notification, now: float) -> dict[str, Any]:
    """The ``message`` object for ``notification``, all but its ``token``.

    FCM wants ``data`` values as strings: strings go as they are, anything else as
    compact JSON; ``pushtrio_id`` carries the notification id. ``now`` (epoch
    seconds) turns ``expires_at`` into Android's ``ttl``.
    """
    high = notification.priority >= HIGH_PRIORITY
    data = {
        key: value if isinstance(value, str) else orjson.dumps(value).decode()
        for key, value in notification.data.items()
    }
    data["pushtrio_id"] = notification.id
    # AndroidMessagePriority in the v1 REST reference: "NORMAL" or "HIGH". The
    # notification tag (not collapse_key: FCM keeps at most 4 collapse keys per
    # offline device, so unique ones would drop messages) makes a second delivery
    # replace the first in the drawer.
    android: dict[str, Any] = {
        "priority": "HIGH" if high else "NORMAL",
        "notification": {"tag": notification.id},
    }
    apns_headers = {
        "apns-priority": "10" if high else "5",
        "apns-collapse-id": collapse_id(notification.id),
    }
    if notification.expires_at is not None:
        expires = notification.expires_at.timestamp()
        android["ttl"] = f"{min(MAX_TTL_S, max(0, int(expires - now)))}s"
        apns_headers["apns-expiration"] = str(max(0, int(expires)))
    return {
        "notification": {"title": notification.title, "body": notification.body},
        "data": data,
        "android": android,
        "apns": {"headers": apns_headers},
    }


def token_result(token: str, response: httpx.Response, now: float) -> TokenResult:
    """Classify FCM's answer to one send (any status but a first 401)."""
    code = response.status_code
    if code == 200:
        return TokenResult(token, TokenState.ACCEPTED)
    status, error_code, fields, message = _error_parts(response)
    reason = error_code or status or f"HTTP {code}"
    if error_code == "UNREGISTERED":
        return TokenResult(token, TokenState.DEAD, reason)
    if (error_code or status) == "INVALID_ARGUMENT" and (
        "message.token" in fields or "registration token is not a valid" in message.lower()
    ):
        return TokenResult(token, TokenState.DEAD, reason)
    if code == 429 or code >= 500 or error_code in _TRANSIENT_CODES:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        return TokenResult(token, TokenState.TRANSIENT, reason, retry_after)
    if 400 <= code < 500:
        return TokenResult(token, TokenState.PERMANENT, reason)
    return TokenResult(token, TokenState.TRANSIENT, reason)


def _error_parts(response: httpx.Response) -> tuple[str, str, set[str], str]:
    """(status, errorCode, violated fields, message) of an FCM error body; blanks if none."""
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "", "", set(), ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return "", "", set(), ""
    error_code = ""
    fields: set[str] = set()
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == _FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            error_code = detail["errorCode"]
        violations = detail.get("fieldViolations")
        if detail.get("@type") == _BAD_REQUEST_TYPE and isinstance(violations, list):
            fields.update(
                v["field"]
                for v in violations
                if isinstance(v, dict) and isinstance(v.get("field"), str)
            )
    status = error.get("status")
    message = error.get("message")
    return (
        status if isinstance(status, str) else "",
        error_code,
        fields,
        message if isinstance(message, str) else "",
    )


__all__ = [
    "FCM_ENDPOINT",
    "FcmClient",
    "ServiceAccount",
    "fcm_message",
    "load_service_account",
    "parse_retry_after",
    "token_result",
]
