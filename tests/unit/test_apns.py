"""The APNs client against the local APNs fake: wire format, answers, tokens, HTTP/2."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from pushtrio.contract.errors import ConfigError
from pushtrio.contract.notification import Notification
from pushtrio.providers.apns import ApnsClient, load_apns_key
from pushtrio.providers.push import TokenResult, TokenState

from ..fakes.apns import DEFAULT_TOPIC, FakeApns
from ..fakes.keys import ec_key_pair, rsa_key_pem
from ..support.ports import closed_port
from ..support.waiting import wait_until

KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
TEST_TIME_LIMIT_S = 20.0


class Clock:
    """An injected wall clock for provider-token ``iat``s."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def device_token(i: int) -> str:
    return f"{i:064x}"


def notification(**fields: object) -> Notification:
    values: dict[str, object] = {"id": "n-1", "user_id": "u-1", "title": "Hi", "body": "There"}
    values.update(fields)
    return Notification(**values)  # type: ignore[arg-type]


@pytest.fixture
def key_pem() -> tuple[bytes, bytes]:
    return ec_key_pair()


@pytest.fixture
async def fake(tmp_path: Path, key_pem: tuple[bytes, bytes]) -> AsyncIterator[FakeApns]:
    server = FakeApns(tmp_path, max_concurrent_streams=10)
    server.add_key(KEY_ID, TEAM_ID, key_pem[1])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        server.release()
        nursery.cancel_scope.cancel()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_client(
    fake: FakeApns, key_pem: tuple[bytes, bytes], clock: Clock
) -> AsyncIterator[Callable[..., ApnsClient]]:
    clients: list[ApnsClient] = []

    def make(**options: object) -> ApnsClient:
        arguments: dict[str, object] = {
            "key_pem": key_pem[0],
            "key_id": KEY_ID,
            "team_id": TEAM_ID,
            "topic": DEFAULT_TOPIC,
            "endpoint": fake.endpoint,
            "ca_file": fake.ca_file,
            "timeout_s": 5.0,
            "clock": clock,
        }
        arguments.update(options)
        client = ApnsClient(**arguments)  # type: ignore[arg-type]
        clients.append(client)
        return client

    with trio.fail_after(TEST_TIME_LIMIT_S):
        yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: Callable[..., ApnsClient]) -> ApnsClient:
    return make_client()


async def push_one(client: ApnsClient, message: Notification | None = None) -> TokenResult:
    results = await client.push(message or notification(), [device_token(1)])
    assert len(results) == 1
    return results[0]


# --- what goes on the wire -------------------------------------------------------------


async def test_headers_and_payload_field_by_field(client: ApnsClient, fake: FakeApns) -> None:
    expires_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    message = notification(
        id="order-42",
        priority=2,
        expires_at=expires_at,
        data={"order": 42, "aps": {"badge": 9}, "nested": {"a": [1, 2]}},
    )
    result = await push_one(client, message)
    assert result == TokenResult(device_token(1), TokenState.ACCEPTED)
    [request] = fake.requests
    assert request.token == device_token(1)
    assert request.headers["apns-topic"] == DEFAULT_TOPIC
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-expiration"] == str(int(expires_at.timestamp()))
    assert request.headers["apns-collapse-id"] == "order-42"
    assert request.headers["authorization"].startswith("bearer ")
    assert request.body == {
        "aps": {"alert": {"title": "Hi", "body": "There"}},
        "order": 42,
        "nested": {"a": [1, 2]},
        "pushtrio_id": "order-42",
    }


@pytest.mark.parametrize(("priority", "expected"), [(0, "5"), (1, "5"), (2, "10"), (3, "10")])
async def test_priority_maps_to_apns_priority(
    client: ApnsClient, fake: FakeApns, priority: int, expected: str
) -> None:
    await push_one(client, notification(priority=priority))
    assert fake.requests[0].headers["apns-priority"] == expected


async def test_no_expiration_header_without_expires_at(client: ApnsClient, fake: FakeApns) -> None:
    await push_one(client, notification(expires_at=None, title="", body="only body"))
    [request] = fake.requests
    assert "apns-expiration" not in request.headers
    assert request.body["aps"] == {"alert": {"body": "only body"}}


@pytest.mark.parametrize("message_id", ["x" * 65, "é" * 40, " padded "])
async def test_collapse_id_is_a_hash_when_the_id_does_not_fit(
    client: ApnsClient, fake: FakeApns, message_id: str
) -> None:
    await push_one(client, notification(id=message_id))
    [request] = fake.requests
    expected = hashlib.sha256(message_id.encode()).hexdigest()[:64]
    assert request.headers["apns-collapse-id"] == expected
    assert request.body["pushtrio_id"] == message_id


async def test_collapse_id_of_exactly_64_bytes_is_the_id(
    client: ApnsClient, fake: FakeApns
) -> None:
    await push_one(client, notification(id="y" * 64))
    assert fake.requests[0].headers["apns-collapse-id"] == "y" * 64


async def test_jwt_header_and_claims(client: ApnsClient, fake: FakeApns, clock: Clock) -> None:
    await push_one(client)
    [request] = fake.requests
    token = request.headers["authorization"].removeprefix("bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    assert request.claims == {"iss": TEAM_ID, "iat": int(clock.now)}


async def test_oversized_payload_is_permanent_and_not_sent(
    client: ApnsClient, fake: FakeApns
) -> None:
    tokens = [device_token(1), device_token(2)]
    results = await client.push(notification(data={"blob": "z" * 4100}), tokens)
    assert results == [TokenResult(t, TokenState.PERMANENT, "PayloadTooLarge") for t in tokens]
    assert fake.requests == []


# --- answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "state"),
    [
        (410, "Unregistered", TokenState.DEAD),
        (400, "BadDeviceToken", TokenState.DEAD),
        (400, "BadCollapseId", TokenState.PERMANENT),
        (403, "InvalidProviderToken", TokenState.PERMANENT),
        (413, "PayloadTooLarge", TokenState.PERMANENT),
        (500, "InternalServerError", TokenState.TRANSIENT),
        (503, "ServiceUnavailable", TokenState.TRANSIENT),
        (429, "TooManyRequests", TokenState.TRANSIENT),
    ],
)
async def test_answers_are_classified(
    client: ApnsClient, fake: FakeApns, status: int, reason: str, state: TokenState
) -> None:
    fake.answer_token(device_token(1), status, reason)
    result = await push_one(client)
    assert result == TokenResult(device_token(1), state, reason, None)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_reported(client: ApnsClient, fake: FakeApns, status: int) -> None:
    fake.answer_next(1, status, "TooManyRequests", retry_after_s=30)
    result = await push_one(client)
    assert result.state is TokenState.TRANSIENT
    assert result.retry_after_s == 30.0


async def test_one_result_per_token_in_order(client: ApnsClient, fake: FakeApns) -> None:
    tokens = [device_token(i) for i in range(6)]
    fake.answer_token(tokens[1], 410, "Unregistered")
    fake.answer_token(tokens[4], 503, "ServiceUnavailable")
    results = await client.push(notification(), tokens)
    assert [r.token for r in results] == tokens
    assert [r.state for r in results] == [
        TokenState.ACCEPTED,
        TokenState.DEAD,
        TokenState.ACCEPTED,
        TokenState.ACCEPTED,
        TokenState.TRANSIENT,
        TokenState.ACCEPTED,
    ]


async def test_wrong_topic_is_permanent(make_client: Callable[..., ApnsClient]) -> None:
    result = await push_one(make_client(topic="com.example.other"))
    assert (result.state, result.reason) == (TokenState.PERMANENT, "TopicDisallowed")


async def test_unknown_key_is_refused(
    make_client: Callable[..., ApnsClient], fake: FakeApns
) -> None:
    other_private, _ = ec_key_pair()
    result = await push_one(make_client(key_pem=other_private))
    assert (result.state, result.reason) == (TokenState.PERMANENT, "InvalidProviderToken")
    assert fake.requests[0].claims is None


# --- provider tokens -----------------------------------------------------------------


def claims_iat(fake: FakeApns) -> list[int]:
    return [int(request.claims["iat"]) for request in fake.requests if request.claims]


def bearer_tokens(fake: FakeApns) -> list[str]:
    return [request.headers["authorization"] for request in fake.requests]


async def test_token_is_reused_then_refreshed_after_40_minutes(
    client: ApnsClient, fake: FakeApns, clock: Clock
) -> None:
    first_iat = int(clock.now)
    await push_one(client)
    clock.now += 39 * 60
    await push_one(client)
    assert len(set(bearer_tokens(fake))) == 1
    clock.now += 60
    await push_one(client)
    tokens = bearer_tokens(fake)
    assert tokens[2] != tokens[1]
    assert claims_iat(fake) == [first_iat, first_iat, first_iat + 40 * 60]


async def test_expired_provider_token_is_replaced_and_retried_once(
    client: ApnsClient, fake: FakeApns, clock: Clock
) -> None:
    old_iat = int(clock.now)
    await push_one(client)
    clock.now += 100
    fake.expire_tokens_issued_before(old_iat + 1)
    result = await push_one(client)
    assert result == TokenResult(device_token(1), TokenState.ACCEPTED)
    assert [r.status for r in fake.requests] == [200, 403, 200]
    assert fake.requests[1].reason == "ExpiredProviderToken"
    assert claims_iat(fake) == [old_iat, old_iat, old_iat + 100]


async def test_concurrent_expired_requests_share_one_new_token(
    client: ApnsClient, fake: FakeApns, clock: Clock
) -> None:
    await push_one(client)
    clock.now += 100
    fake.expire_tokens_issued_before(clock.now)
    tokens = [device_token(i) for i in range(20)]
    results = await client.push(notification(), tokens)
    assert {r.state for r in results} == {TokenState.ACCEPTED}
    retried = [r for r in fake.requests[1:] if r.status == 200]
    assert len(retried) == 20
    assert len({r.headers["authorization"] for r in retried}) == 1


async def test_expired_twice_is_transient(client: ApnsClient, fake: FakeApns) -> None:
    fake.expire_tokens_issued_before(float("inf"))
    result = await push_one(client)
    assert (result.state, result.reason) == (TokenState.TRANSIENT, "ExpiredProviderToken")
    assert [r.reason for r in fake.requests] == ["ExpiredProviderToken"] * 2


async def test_a_forced_refresh_happens_at_most_once_per_20_minutes(
    client: ApnsClient, fake: FakeApns, clock: Clock
) -> None:
    """Apple throttles provider tokens replaced more often (TooManyProviderTokenUpdates):
    when it calls a fresh token expired again (a clock or key that is off), the push is
    a transient failure, with no new token, until 20 minutes have passed."""
    fake.expire_tokens_issued_before(float("inf"))
    await push_one(client)  # refused twice: the first forced refresh
    assert len(set(bearer_tokens(fake))) == 2
    clock.now += 19 * 60
    result = await push_one(client)
    assert (result.state, result.reason) == (TokenState.TRANSIENT, "ExpiredProviderToken")
    assert len(set(bearer_tokens(fake))) == 2  # not replaced again, not retried
    assert len(fake.requests) == 3
    clock.now += 60
    await push_one(client)
    assert len(set(bearer_tokens(fake))) == 3


# --- timeouts and connections ----------------------------------------------------------


async def test_a_stall_is_a_transient_timeout_within_timeout_s(
    make_client: Callable[..., ApnsClient], fake: FakeApns
) -> None:
    client = make_client(timeout_s=0.5)
    fake.stall()
    started = trio.current_time()
    result = await push_one(client)
    elapsed_s = trio.current_time() - started
    assert (result.state, result.reason) == (TokenState.TRANSIENT, "timeout")
    assert 0.45 <= elapsed_s < 2.0
    await wait_until(lambda: fake.held == 1, 5.0, "the fake holds the stalled request")
    fake.release()
    # The client recovers: the next push is accepted.
    assert (await push_one(client)).state is TokenState.ACCEPTED


async def test_unreachable_endpoint_is_a_transient_connection_error(
    make_client: Callable[..., ApnsClient],
) -> None:
    with closed_port() as port:
        result = await push_one(make_client(endpoint=f"https://127.0.0.1:{port}"))
    assert result.state is TokenState.TRANSIENT
    assert result.reason.startswith("connection: ")


async def test_untrusted_certificate_is_transient(
    make_client: Callable[..., ApnsClient], tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = FakeApns(tmp_path / "other")  # another test CA: not the one serving
    result = await push_one(make_client(ca_file=other.ca_file))
    assert result.state is TokenState.TRANSIENT
    assert result.reason.startswith("connection: ")


async def test_many_tokens_share_one_multiplexed_connection(
    client: ApnsClient, fake: FakeApns
) -> None:
    fake.set_latency(0.005)
    tokens = [device_token(i) for i in range(200)]
    results = await client.push(notification(), tokens)
    assert all(r.state is TokenState.ACCEPTED for r in results)
    assert len(fake.requests) == 200
    assert fake.connections == 1
    assert 1 < fake.max_concurrent_requests <= 10


# httpx leaves the body iterator of a request cut off by a reset connection to the
# garbage collector (a ResourceWarning of its own, not a leak of ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_connection_the_server_closes_is_replaced_and_its_pushes_retried(
    tmp_path: Path, key_pem: tuple[bytes, bytes], clock: Clock
) -> None:
    """After ``requests_per_connection`` requests the server sends GOAWAY (hypercorn
    does, Apple may): the pushes caught on it go again on a new connection."""
    fake = FakeApns(tmp_path, requests_per_connection=150)
    fake.add_key(KEY_ID, TEAM_ID, key_pem[1])
    fake.set_latency(0.005)
    with trio.fail_after(TEST_TIME_LIMIT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            client = ApnsClient(
                key_pem[0],
                KEY_ID,
                TEAM_ID,
                DEFAULT_TOPIC,
                endpoint=fake.endpoint,
                ca_file=fake.ca_file,
                timeout_s=5.0,
                clock=clock,
            )
            for round_ in range(4):
                tokens = [device_token(round_ * 1000 + i) for i in range(100)]
                results = await client.push(notification(), tokens)
                assert [r.state for r in results] == [TokenState.ACCEPTED] * 100
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert fake.connections >= 3
    assert client.reconnects >= 2
    accepted = {r.token for r in fake.requests if r.status == 200}
    assert len(accepted) == 400


# --- the key file ----------------------------------------------------------------------


def test_load_apns_key_reads_a_p256_key(tmp_path: Path, key_pem: tuple[bytes, bytes]) -> None:
    path = tmp_path / "AuthKey.p8"
    path.write_bytes(key_pem[0])
    assert load_apns_key(str(path)) == key_pem[0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read the key file"),
        (b"not a key\n", "not a PEM private key"),
        (rsa_key_pem(), "RSA key; APNs needs an EC P-256 key"),
        (ec_key_pair(ec.SECP384R1())[0], "secp384r1; APNs needs P-256"),
    ],
    ids=["missing", "not-a-key", "rsa", "p384"],
)
def test_load_apns_key_refuses(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "AuthKey.p8"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as exc_info:
        load_apns_key(str(path))
    assert exc_info.value.variable == "APNS_KEY_FILE"
    assert exc_info.value.value == str(path)
    assert reason in exc_info.value.reason


def test_client_refuses_a_bad_key() -> None:
    with pytest.raises(ValueError, match="RSA"):
        ApnsClient(rsa_key_pem(), KEY_ID, TEAM_ID, DEFAULT_TOPIC)
