"""A local fake of FCM HTTP v1 and Google's OAuth2 token endpoint, on 127.0.0.1.

Plain HTTP/1.1 served by hypercorn under trio; the app is raw ASGI. It checks what
a real client must get right and answers in Google's shapes:

- ``POST /token`` verifies the RS256 assertion of a service account it wrote with
  :meth:`FakeFcm.write_credentials` (signature, ``kid``, ``iss``, ``aud``, ``scope``,
  ``iat``/``exp``) and issues an opaque access token valid ``expires_in`` seconds;
  a bad assertion gets ``400 {"error": "invalid_grant"}``.
- ``POST /v1/projects/<project>/messages:send`` wants the project, a bearer it
  issued and has not revoked, and a well-formed message (a token, string data,
  ``NORMAL``/``HIGH`` Android priority, a ``<seconds>s`` ttl); it records every
  request and answers ``{"name": ...}`` or a scripted FCM error.

Scripting methods are synchronous and guarded by a ``threading.Lock``: tests call
them from the loop the fake serves in, or from another thread while
:func:`tests.fakes.running.in_thread` serves it.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import jwt
import orjson
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOCK_SKEW_S = 300
"""What the token endpoint forgives in an assertion's ``iat``/``exp``."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_TTL = re.compile(r"\d+(\.\d{1,9})?s")


@dataclass(frozen=True, slots=True)
class FcmFailure:
    """A scripted FCM error answer."""

    http_status: int
    status: str
    error_code: str | None = None
    """FcmError ``errorCode`` in ``details``; None for none (as for UNAUTHENTICATED)."""
    field_violation: str | None = None
    """A BadRequest ``fieldViolations`` entry naming this field (``message.token``)."""
    retry_after: str | None = None
    """A Retry-After header value."""
    message: str = "scripted failure"


UNREGISTERED = FcmFailure(
    404, "NOT_FOUND", "UNREGISTERED", message="Requested entity was not found."
)
INVALID_TOKEN = FcmFailure(
    400,
    "INVALID_ARGUMENT",
    "INVALID_ARGUMENT",
    field_violation="message.token",
    message="The registration token is not a valid FCM registration token",
)
INVALID_PAYLOAD = FcmFailure(
    400,
    "INVALID_ARGUMENT",
    "INVALID_ARGUMENT",
    field_violation="message.data",
    message="Invalid value at 'message.data'",
)
SENDER_ID_MISMATCH = FcmFailure(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
QUOTA_EXCEEDED = FcmFailure(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after="7")
UNAVAILABLE = FcmFailure(503, "UNAVAILABLE", "UNAVAILABLE", message="The service is unavailable.")
INTERNAL = FcmFailure(500, "INTERNAL", "INTERNAL", message="Internal error encountered.")
UNAUTHENTICATED = FcmFailure(
    401, "UNAUTHENTICATED", None, message="Request had invalid authentication credentials."
)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One messages:send request as the fake saw it."""

    project: str
    body: Any
    """The parsed JSON body (``{"message": {...}}`` from a well-behaved client)."""
    headers: dict[str, str]
    """Lower-cased header names."""
    access_token: str
    http_status: int
    """What the fake answered."""

    @property
    def message(self) -> dict[str, Any]:
        inner = self.body.get("message") if isinstance(self.body, dict) else None
        return inner if isinstance(inner, dict) else {}


@dataclass(slots=True)
class _State:
    public_keys: dict[str, tuple[str, rsa.RSAPublicKey]] = field(default_factory=dict)
    """kid -> (client email, public key) of the service accounts the fake trusts."""
    access_tokens: dict[str, float] = field(default_factory=dict)
    """Issued access token -> expiry (fake clock)."""
    token_exchanges: int = 0
    expires_in_s: int = 3600
    token_failure: int | None = None
    by_device: dict[str, FcmFailure] = field(default_factory=dict)
    next_failures: list[FcmFailure] = field(default_factory=list)
    messages: list[ReceivedMessage] = field(default_factory=list)
    latency_s: float = 0.0
    stalled: bool = False
    waiting: int = 0


class FakeFcm:
    """FCM HTTP v1 plus its token endpoint; see the module docstring.

    ``clock`` (epoch seconds) dates assertions and access tokens: share it with the
    client under test to move time for both.
    """

    def __init__(
        self, project_id: str = "pushtrio-test", *, clock: Callable[[], float] = time.time
    ) -> None:
        self.project_id = project_id
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _State()
        self._port: int | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._release = trio.Event()

    # -- serving ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, once :meth:`serve` has started."""
        if self._port is None:
            raise RuntimeError("FakeFcm is not serving yet")
        return f"http://127.0.0.1:{self._port}"

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free port of 127.0.0.1, report it, serve until cancelled.

        Cancellation stops at once: requests held by :meth:`stall` are abandoned.
        """
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.loglevel = "WARNING"
        config.graceful_timeout = 0.1
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(hypercorn_serve, cast(ASGIFramework, self._app), config, mode="asgi")
            )
            self._trio_token = trio.lowlevel.current_trio_token()
            self._port = int(binds[0].rsplit(":", 1)[1])
            task_status.started(self._port)

    # -- scripting (any thread) ------------------------------------------------

    def write_credentials(
        self,
        path: Path | str,
        *,
        trusted: bool = True,
        project_id: str | None = None,
        token_uri: str | None = None,
    ) -> Path:
        """Write a service-account key file whose token_uri is this fake's ``/token``.

        A fresh key id each call (the RSA 2048 key itself is made once per process:
        making one takes a tenth of a second); the fake accepts its assertions when
        ``trusted`` (otherwise they get ``invalid_grant``). ``token_uri`` defaults to
        this fake's, which needs :meth:`serve` started.
        """
        key = _rsa_key()
        kid = secrets.token_hex(20)
        email = f"push-{kid[:8]}@{self.project_id}.iam.gserviceaccount.com"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        document = {
            "type": "service_account",
            "project_id": project_id or self.project_id,
            "private_key_id": kid,
            "private_key": pem,
            "client_email": email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri or self.token_uri,
        }
        if trusted:
            with self._lock:
                self._state.public_keys[kid] = (email, key.public_key())
        target = Path(path)
        target.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        return target

    @property
    def token_exchanges(self) -> int:
        """Requests to ``/token`` so far (granted or not)."""
        with self._lock:
            return self._state.token_exchanges

    def messages(self) -> list[ReceivedMessage]:
        """A copy of every messages:send request received, in order."""
        with self._lock:
            return list(self._state.messages)

    @property
    def waiting(self) -> int:
        """Requests held by :meth:`stall` right now."""
        with self._lock:
            return self._state.waiting

    def set_expires_in(self, seconds: int) -> None:
        """Lifetime of the access tokens issued from now on."""
        with self._lock:
            self._state.expires_in_s = seconds

    def fail_token_exchange(self, http_status: int | None) -> None:
        """Answer ``/token`` with this status (503, 400 ``invalid_grant``...); None heals."""
        with self._lock:
            self._state.token_failure = http_status

    def revoke_access_tokens(self) -> None:
        """Forget every access token issued: their next use gets a 401."""
        with self._lock:
            self._state.access_tokens.clear()

    def fail_device(self, device_token: str, failure: FcmFailure) -> None:
        """Answer every message to ``device_token`` with ``failure``."""
        with self._lock:
            self._state.by_device[device_token] = failure

    def fail_next(self, n: int, failure: FcmFailure) -> None:
        """Answer the next ``n`` messages (whatever their token) with ``failure``."""
        with self._lock:
            self._state.next_failures.extend([failure] * n)

    def clear_failures(self) -> None:
        with self._lock:
            self._state.by_device.clear()
            self._state.next_failures.clear()

    def set_latency(self, seconds: float) -> None:
        """Wait this long before each messages:send answer."""
        with self._lock:
            self._state.latency_s = seconds

    def stall(self) -> None:
        """Hold every messages:send request unanswered until :meth:`release`."""
        with self._lock:
            self._state.stalled = True

    def release(self) -> None:
        """Answer the held requests and stop holding new ones."""
        with self._lock:
            self._state.stalled = False
            release, self._release = self._release, trio.Event()
        if self._trio_token is None:
            release.set()
        else:
            # Thread-safe, and also fine from the fake's own loop.
            self._trio_token.run_sync_soon(release.set)

    # -- the ASGI app ----------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path = scope["path"]
        if scope["method"] != "POST":
            await _answer(send, 405, {"error": "method not allowed"})
        elif path == "/token":
            await _answer(send, *self._token(body))
        elif match := _SEND_PATH.fullmatch(path):
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in scope["headers"]
            }
            await self._hold()
            await _answer(send, *self._send(match.group(1), headers, body))
        else:
            await _answer(send, 404, _fcm_error(FcmFailure(404, "NOT_FOUND", None)))

    async def _hold(self) -> None:
        with self._lock:
            latency_s = self._state.latency_s
        if latency_s > 0:
            await trio.sleep(latency_s)
        while True:
            with self._lock:
                if not self._state.stalled:
                    return
                release = self._release
                self._state.waiting += 1
            try:
                await release.wait()
            finally:
                with self._lock:
                    self._state.waiting -= 1

    def _token(self, body: bytes) -> tuple[int, dict[str, Any]]:
        form = urllib.parse.parse_qs(body.decode("latin-1"))
        with self._lock:
            self._state.token_exchanges += 1
            failure = self._state.token_failure
            keys = dict(self._state.public_keys)
            expires_in = self._state.expires_in_s
        if failure is not None:
            error = "invalid_grant" if failure == 400 else "backend_error"
            return failure, {"error": error, "error_description": "scripted failure"}
        if form.get("grant_type") != [JWT_BEARER_GRANT] or len(form.get("assertion", [])) != 1:
            return 400, {"error": "unsupported_grant_type"}
        problem = self._check_assertion(form["assertion"][0], keys)
        if problem:
            return 400, {"error": "invalid_grant", "error_description": problem}
        access_token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._state.access_tokens[access_token] = self._clock() + expires_in
        return 200, {"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}

    def _check_assertion(self, assertion: str, keys: dict[str, tuple[str, Any]]) -> str:
        """Why the assertion is refused; empty when it is good."""
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            if kid not in keys:
                return f"unknown key id {kid!r}"
            email, public_key = keys[kid]
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=email,
                # Times are checked below against the fake's clock, not the real one.
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return f"invalid JWT signature or claims: {exc}"
        now = self._clock()
        if claims.get("scope") != FCM_SCOPE:
            return f"scope is {claims.get('scope')!r}"
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "iat and exp must be integers"
        if iat > now + CLOCK_SKEW_S or exp < now - CLOCK_SKEW_S or exp - iat > 3600:
            return "the assertion is not valid now or lasts over an hour"
        return ""

    def _send(
        self, project: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        authorization = headers.get("authorization", "")
        access_token = authorization.removeprefix("Bearer ") if authorization else ""
        try:
            document: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        with self._lock:
            expiry = self._state.access_tokens.get(access_token)
            if expiry is None or expiry <= self._clock():
                failure: FcmFailure | None = UNAUTHENTICATED
            elif project != self.project_id:
                failure = FcmFailure(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
            else:
                failure = _malformed(document)
                device = _device_token(document)
                if failure is None and self._state.next_failures:
                    failure = self._state.next_failures.pop(0)
                if failure is None and device in self._state.by_device:
                    failure = self._state.by_device[device]
            status = 200 if failure is None else failure.http_status
            self._state.messages.append(
                ReceivedMessage(project, document, headers, access_token, status)
            )
            serial = len(self._state.messages)
        if failure is None:
            return 200, {"name": f"projects/{project}/messages/0:{serial}"}, {}
        extra = {"retry-after": failure.retry_after} if failure.retry_after else {}
        return failure.http_status, _fcm_error(failure), extra


@functools.cache
def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _device_token(document: Any) -> str:
    message = document.get("message") if isinstance(document, dict) else None
    token = message.get("token") if isinstance(message, dict) else None
    return token if isinstance(token, str) else ""


def _malformed(document: Any) -> FcmFailure | None:
    """The INVALID_ARGUMENT FCM would give a malformed message, or None."""

    def invalid(field: str, why: str) -> FcmFailure:
        return FcmFailure(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field, why)

    message = document.get("message") if isinstance(document, dict) else None
    if not isinstance(message, dict):
        return invalid("message", "the body must be {'message': {...}}")
    if not _device_token(document):
        return invalid(
            "message.token", "The registration token is not a valid FCM registration token"
        )
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return invalid("message.data", "data values must be strings")
    android = message.get("android", {})
    if not isinstance(android, dict):
        return invalid("message.android", "android must be an object")
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        return invalid("message.android.priority", "priority must be NORMAL or HIGH")
    if "ttl" in android and not _TTL.fullmatch(str(android["ttl"])):
        return invalid("message.android.ttl", "ttl must be a duration like '3.5s'")
    apns = message.get("apns", {})
    headers = apns.get("headers", {}) if isinstance(apns, dict) else None
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return invalid("message.apns.headers", "apns headers must be strings")
    return None


def _fcm_error(failure: FcmFailure) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if failure.error_code:
        details.append(
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": failure.error_code,
            }
        )
    if failure.field_violation:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": failure.field_violation, "description": failure.message}
                ],
            }
        )
    error: dict[str, Any] = {
        "code": failure.http_status,
        "message": failure.message,
        "status": failure.status,
    }
    if details:
        error["details"] = details
    return {"error": error}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            break
        chunks.append(event.get("body", b""))
        if not event.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(
    send: Send, status: int, document: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    body = orjson.dumps(document)
    raw_headers = [
        (b"content-type", b"application/json; charset=UTF-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "INTERNAL",
    "INVALID_PAYLOAD",
    "INVALID_TOKEN",
    "QUOTA_EXCEEDED",
    "SENDER_ID_MISMATCH",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "UNREGISTERED",
    "FakeFcm",
    "FcmFailure",
    "ReceivedMessage",
]
