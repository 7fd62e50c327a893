"""A local fake of Apple's APNs provider API: HTTP/2 over TLS on 127.0.0.1.

Hypercorn serves a small ASGI app under trio, with a certificate from a ``trustme``
test CA (:attr:`FakeApns.ca_file` is the CA to trust). Like Apple it checks, in
order: the path (404 BadPath) and method (405), the provider token (403
MissingProviderToken / InvalidProviderToken / ExpiredProviderToken for the keys
registered with :meth:`FakeApns.add_key`), the topic (400 MissingTopic /
TopicDisallowed), the apns-* headers and the payload; then it applies what the
test scripted, else answers 200 with an ``apns-id``.

Every request is recorded (:class:`ApnsRequest`), with the connection it came on
and the number of requests open at once. The scripting methods and the readers are
synchronous and guarded by one lock, so a test may drive the fake from the trio
thread it runs in or from another thread (``tests/fakes/running.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hypercorn.config
import hypercorn.trio
import jwt
import orjson
import trio
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_TOPIC = "com.example.pushtrio"
PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
    }
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ApnsRequest:
    """One request as the fake saw it; ``status`` and ``reason`` once answered."""

    token: str
    headers: dict[str, str]
    body: Any
    """The parsed JSON body (None when it was not JSON)."""
    connection: tuple[str, int]
    """The client's (host, port): one per HTTP/2 connection."""
    claims: dict[str, Any] | None = None
    """The verified JWT claims (None when the token was missing or refused)."""
    status: int | None = None
    reason: str = ""


@dataclass
class Answer:
    status: int
    reason: str
    retry_after_s: float | None = None


@dataclass
class _Script:
    by_token: dict[str, Answer] = field(default_factory=dict)
    next_answers: list[Answer] = field(default_factory=list)
    expire_before: float | None = None
    latency_s: float = 0.0
    stalled: bool = False


class FakeApns:
    """The fake server; :meth:`serve` runs it, the other methods script and inspect it."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        topics: Iterable[str] = (DEFAULT_TOPIC,),
        max_concurrent_streams: int = 100,
        requests_per_connection: int = 1000,
    ) -> None:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="fake-apns-")
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        self._directory = Path(directory)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = str(self._directory / "fake-apns-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self._cert_file = str(self._directory / "fake-apns-cert.pem")
        self._key_file = str(self._directory / "fake-apns-key.pem")
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(self._cert_file, append=True)
        leaf.private_key_pem.write_to_path(self._key_file)
        self.topics = frozenset(topics)
        self.max_concurrent_streams = max_concurrent_streams
        self.requests_per_connection = requests_per_connection
        """After this many requests on a connection the server sends GOAWAY (as
        hypercorn does, and as Apple may)."""
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}
        self._lock = threading.Condition()
        self._script = _Script()
        self._requests: list[ApnsRequest] = []
        self._open = 0
        self._max_open = 0
        self._held = 0
        self._release: trio.Event | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._port: int | None = None

    # --- serving ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (a free port), report the port, serve until cancelled.

        Requests held by :meth:`stall` are cancelled with the server."""
        config = hypercorn.config.Config()
        config.bind = ["127.0.0.1:0"]
        config.certfile = self._cert_file
        config.keyfile = self._key_file
        config.alpn_protocols = ["h2"]
        config.h2_max_concurrent_streams = self.max_concurrent_streams
        config.errorlog = None
        config.accesslog = None
        config.keep_alive_timeout = 60.0
        config.keep_alive_max_requests = self.requests_per_connection
        self._trio_token = trio.lowlevel.current_trio_token()
        app: Any = self._app  # hypercorn types ASGI messages as TypedDicts; ours are dicts
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(hypercorn.trio.serve, app, config, mode="asgi"))
            self._port = int(binds[0].rsplit(":", 1)[1])
            task_status.started(self._port)

    @property
    def endpoint(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeApns is not serving yet")
        return f"https://127.0.0.1:{self._port}"

    # --- keys and scripting (any thread) -------------------------------------------

    def add_key(self, key_id: str, team_id: str, public_pem: bytes) -> None:
        """Accept provider tokens signed by ``public_pem``'s key as ``key_id`` of ``team_id``."""
        key = serialization.load_pem_public_key(public_pem)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        with self._lock:
            self._keys[key_id] = (team_id, key)

    def answer_token(
        self, token: str, status: int, reason: str, *, retry_after_s: float | None = None
    ) -> None:
        """Answer every request for ``token`` with ``status`` and ``reason`` from now on."""
        with self._lock:
            self._script.by_token[token] = Answer(status, reason, retry_after_s)

    def answer_next(
        self, n: int, status: int, reason: str, *, retry_after_s: float | None = None
    ) -> None:
        """Answer the next ``n`` requests that pass the checks with ``status`` and ``reason``."""
        with self._lock:
            self._script.next_answers.extend([Answer(status, reason, retry_after_s)] * n)

    def expire_tokens_issued_before(self, iat: float) -> None:
        """Answer 403 ExpiredProviderToken to JWTs whose ``iat`` is before ``iat``."""
        with self._lock:
            self._script.expire_before = iat

    def set_latency(self, latency_s: float) -> None:
        """Wait this long before answering each request."""
        with self._lock:
            self._script.latency_s = latency_s

    def stall(self) -> None:
        """Hold every request from now on, unanswered, until :meth:`release`."""
        with self._lock:
            self._script.stalled = True

    def release(self) -> None:
        """Stop stalling; the held requests go on to be answered."""
        with self._lock:
            self._script.stalled = False
            event, self._release = self._release, None
        if event is not None and self._trio_token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._trio_token.run_sync_soon(event.set)  # safe from any thread

    def reset_script(self) -> None:
        """Forget every scripted answer, expiry, latency and stall."""
        self.release()
        with self._lock:
            self._script = _Script()

    # --- what was seen (any thread) ------------------------------------------------

    @property
    def requests(self) -> list[ApnsRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """How many distinct connections sent requests."""
        with self._lock:
            return len({request.connection for request in self._requests})

    @property
    def max_concurrent_requests(self) -> int:
        """The most requests that were open (received, not yet answered) at once."""
        with self._lock:
            return self._max_open

    @property
    def held(self) -> int:
        """How many requests a stall holds right now."""
        with self._lock:
            return self._held

    def wait_for_requests(self, n: int, timeout_s: float) -> bool:
        """Block (a thread) until ``n`` requests arrived; False after ``timeout_s``."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._requests) >= n, timeout_s)

    def wait_for_held(self, n: int, timeout_s: float) -> bool:
        """Block (a thread) until a stall holds ``n`` requests; False after ``timeout_s``."""
        with self._lock:
            return self._lock.wait_for(lambda: self._held >= n, timeout_s)

    # --- the ASGI app ----------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await self._handle(scope, body, send)

    async def _handle(self, scope: Scope, body: bytes, send: Send) -> None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        path: str = scope["path"]
        if not path.startswith("/3/device/"):
            await _respond(send, 404, "BadPath", headers)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, "MethodNotAllowed", headers)
            return
        try:
            document = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            document = None
        client = scope.get("client") or ("", 0)
        request = ApnsRequest(
            path.removeprefix("/3/device/"), headers, document, (client[0], client[1])
        )
        with self._lock:
            self._requests.append(request)
            self._open += 1
            self._max_open = max(self._max_open, self._open)
            latency_s = self._script.latency_s
            self._lock.notify_all()
        try:
            if latency_s:
                await trio.sleep(latency_s)
            await self._wait_while_stalled()
            answer = self._answer(request, body)
            request.status, request.reason = answer.status, answer.reason
            await _respond(send, answer.status, answer.reason, headers, answer.retry_after_s)
        finally:
            with self._lock:
                self._open -= 1

    async def _wait_while_stalled(self) -> None:
        with self._lock:
            if not self._script.stalled:
                return
            if self._release is None:
                self._release = trio.Event()
            event = self._release
            self._held += 1
            self._lock.notify_all()
        try:
            await event.wait()
        finally:
            with self._lock:
                self._held -= 1

    def _answer(self, request: ApnsRequest, body: bytes) -> Answer:
        refusal = self._check_token(request) or _check_request(request, body, self.topics)
        if refusal is not None:
            return refusal
        with self._lock:
            if request.token in self._script.by_token:
                return self._script.by_token[request.token]
            if self._script.next_answers:
                return self._script.next_answers.pop(0)
        return Answer(200, "")

    def _check_token(self, request: ApnsRequest) -> Answer | None:
        authorization = request.headers.get("authorization", "")
        if not authorization:
            return Answer(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Answer(403, "InvalidProviderToken")
        try:
            key_id = str(jwt.get_unverified_header(token).get("kid"))
            with self._lock:
                team_id, key = self._keys[key_id]
                expire_before = self._script.expire_before
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                issuer=team_id,
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except (jwt.InvalidTokenError, KeyError, TypeError):
            return Answer(403, "InvalidProviderToken")
        if not isinstance(claims["iat"], int):
            return Answer(403, "InvalidProviderToken")
        request.claims = claims
        if expire_before is not None and claims["iat"] < expire_before:
            return Answer(403, "ExpiredProviderToken")
        return None


def _check_request(request: ApnsRequest, body: bytes, topics: frozenset[str]) -> Answer | None:
    headers = request.headers
    topic = headers.get("apns-topic")
    checks = [
        (topic is None, Answer(400, "MissingTopic")),
        (topic is not None and topic not in topics, Answer(400, "TopicDisallowed")),
        (not request.token, Answer(400, "MissingDeviceToken")),
        (headers.get("apns-push-type", "alert") not in PUSH_TYPES, Answer(400, "InvalidPushType")),
        (headers.get("apns-priority", "10") not in {"1", "5", "10"}, Answer(400, "BadPriority")),
        (not headers.get("apns-expiration", "0").isdigit(), Answer(400, "BadExpirationDate")),
        (
            len(headers.get("apns-collapse-id", "").encode("latin-1")) > 64,
            Answer(400, "BadCollapseId"),
        ),
        (len(body) > 4096, Answer(413, "PayloadTooLarge")),
        (not body, Answer(400, "PayloadEmpty")),
        (request.body is None, Answer(400, "BadPayload")),  # the fake's word: Apple has none
    ]
    return next((answer for failed, answer in checks if failed), None)


async def _respond(
    send: Send,
    status: int,
    reason: str,
    request_headers: dict[str, str],
    retry_after_s: float | None = None,
) -> None:
    apns_id = request_headers.get("apns-id") or str(uuid.uuid4()).upper()
    headers = [(b"apns-id", apns_id.encode())]
    body = b""
    if status != 200:
        document: dict[str, Any] = {"reason": reason}
        if status == 410:
            document["timestamp"] = int(time.time() * 1000)
        body = orjson.dumps(document)
        headers.append((b"content-type", b"application/json"))
    if retry_after_s is not None:
        headers.append((b"retry-after", f"{retry_after_s:g}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
