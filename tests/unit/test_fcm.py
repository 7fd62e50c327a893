"""FcmClient against the local FCM HTTP v1 fake: the message, the answers, the OAuth2 token."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushtrio.contract.errors import ConfigError
from pushtrio.contract.notification import Notification
from pushtrio.providers.fcm import FcmClient, load_service_account, parse_retry_after
from pushtrio.providers.google_oauth import FCM_SCOPE, REFRESH_MARGIN_S
from pushtrio.providers.push import PushClient, TokenResult, TokenState

from ..fakes.fcm import (
    INTERNAL,
    INVALID_PAYLOAD,
    INVALID_TOKEN,
    QUOTA_EXCEEDED,
    SENDER_ID_MISMATCH,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNREGISTERED,
    FakeFcm,
    FcmFailure,
)
from ..fakes.running import in_thread
from ..support.ports import closed_port
from ..support.waiting import wait_until


class Clock:
    """Epoch seconds that only move when told to; shared by the fake and the client."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(nursery: trio.Nursery, clock: Clock) -> FakeFcm:
    server = FakeFcm(clock=clock)
    await nursery.start(server.serve)
    return server


@pytest.fixture
async def client(fake: FakeFcm, clock: Clock, tmp_path: Path) -> AsyncIterator[FcmClient]:
    account = load_service_account(str(fake.write_credentials(tmp_path / "sa.json")))
    fcm = FcmClient("fcm", account, endpoint=fake.endpoint, timeout_s=2.0, clock=clock)
    yield fcm
    await fcm.aclose()


def note(**fields: object) -> Notification:
    defaults: dict[str, object] = {"id": "n-1", "user_id": "u1", "title": "Hi", "body": "There"}
    return Notification(**{**defaults, **fields})  # type: ignore[arg-type]


def states(results: list[TokenResult]) -> list[tuple[str, TokenState, str]]:
    return [(r.token, r.state, r.reason) for r in results]


# -- the message ---------------------------------------------------------------


async def test_a_high_priority_message_field_by_field(
    client: FcmClient, fake: FakeFcm, clock: Clock
) -> None:
    expires_at = datetime.fromtimestamp(clock.now + 120, UTC)
    data = {"text": "plain", "count": 3, "nested": {"a": [1, None]}, "flag": True}
    results = await client.push(note(priority=3, data=data, expires_at=expires_at), ["tok-a"])

    assert states(results) == [("tok-a", TokenState.ACCEPTED, "")]
    [received] = fake.messages()
    assert received.project == fake.project_id == client.account.project_id
    assert received.headers["authorization"] == f"Bearer {received.access_token}"
    assert received.headers["content-type"].startswith("application/json")
    assert received.body == {
        "message": {
            "token": "tok-a",
            "notification": {"title": "Hi", "body": "There"},
            "data": {
                "text": "plain",
                "count": "3",
                "nested": '{"a":[1,null]}',
                "flag": "true",
                "pushtrio_id": "n-1",
            },
            "android": {"priority": "HIGH", "notification": {"tag": "n-1"}, "ttl": "120s"},
            "apns": {
                "headers": {
                    "apns-priority": "10",
                    "apns-collapse-id": "n-1",
                    "apns-expiration": str(int(clock.now + 120)),
                }
            },
        }
    }


@pytest.mark.parametrize(
    ("priority", "android", "apns"), [(0, "NORMAL", "5"), (1, "NORMAL", "5"), (2, "HIGH", "10")]
)
async def test_priority_maps_to_android_and_apns(
    client: FcmClient, fake: FakeFcm, priority: int, android: str, apns: str
) -> None:
    await client.push(note(priority=priority), ["tok"])
    message = fake.messages()[0].message
    assert message["android"]["priority"] == android
    assert message["apns"]["headers"]["apns-priority"] == apns
    # Without expires_at there is no lifetime to tell either platform.
    assert "ttl" not in message["android"]
    assert "apns-expiration" not in message["apns"]["headers"]
    assert message["data"] == {"pushtrio_id": "n-1"}


async def test_an_expired_notification_gets_a_zero_ttl(
    client: FcmClient, fake: FakeFcm, clock: Clock
) -> None:
    expires_at = datetime.fromtimestamp(clock.now, UTC) - timedelta(seconds=30)
    await client.push(note(expires_at=expires_at), ["tok"])
    assert fake.messages()[0].message["android"]["ttl"] == "0s"


async def test_a_far_expiry_is_cut_to_fcms_longest_ttl(
    client: FcmClient, fake: FakeFcm, clock: Clock
) -> None:
    expires_at = datetime.fromtimestamp(clock.now, UTC) + timedelta(days=60)
    await client.push(note(expires_at=expires_at), ["tok"])
    assert fake.messages()[0].message["android"]["ttl"] == f"{28 * 24 * 3600}s"


async def test_a_long_id_collapses_to_a_sha256_prefix_for_apns(
    client: FcmClient, fake: FakeFcm
) -> None:
    long_id = "é" * 33  # 33 characters, 66 UTF-8 bytes: over APNs' 64
    fits = "x" * 64
    await client.push(note(id=long_id), ["tok-1"])
    await client.push(note(id=fits), ["tok-2"])
    first, second = (m.message for m in fake.messages())
    assert (
        first["apns"]["headers"]["apns-collapse-id"]
        == hashlib.sha256(long_id.encode()).hexdigest()[:64]
    )
    assert first["android"]["notification"]["tag"] == first["data"]["pushtrio_id"] == long_id
    assert second["apns"]["headers"]["apns-collapse-id"] == fits


async def test_one_result_per_token_in_order_and_sent_concurrently(
    client: FcmClient, fake: FakeFcm
) -> None:
    fake.set_latency(0.2)
    tokens = [f"tok-{i}" for i in range(20)]
    fake.fail_device("tok-3", UNREGISTERED)
    fake.fail_device("tok-17", UNAVAILABLE)
    started = trio.current_time()
    results = await client.push(note(), tokens)
    elapsed = trio.current_time() - started

    assert [r.token for r in results] == tokens
    assert results[3].state is TokenState.DEAD
    assert results[17].state is TokenState.TRANSIENT
    assert sum(r.state is TokenState.ACCEPTED for r in results) == 18
    assert sorted(m.message["token"] for m in fake.messages()) == sorted(tokens)
    assert elapsed < 20 * 0.2 / 2, "the sends did not overlap"


async def test_no_tokens_no_requests(client: FcmClient, fake: FakeFcm) -> None:
    assert await client.push(note(), []) == []
    assert fake.token_exchanges == 0


async def test_is_a_push_client(fake: FakeFcm, tmp_path: Path) -> None:
    account = load_service_account(str(fake.write_credentials(tmp_path / "sa.json")))
    fcm: PushClient = FcmClient("firebase", account, endpoint=fake.endpoint)
    try:
        assert fcm.name == "firebase"
        assert (await fcm.push(note(), ["tok"]))[0].state is TokenState.ACCEPTED
    finally:
        await fcm.aclose()


# -- the answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "state", "reason", "retry_after_s"),
    [
        (UNREGISTERED, TokenState.DEAD, "UNREGISTERED", None),
        (INVALID_TOKEN, TokenState.DEAD, "INVALID_ARGUMENT", None),
        (INVALID_PAYLOAD, TokenState.PERMANENT, "INVALID_ARGUMENT", None),
        (SENDER_ID_MISMATCH, TokenState.PERMANENT, "SENDER_ID_MISMATCH", None),
        (FcmFailure(413, "INVALID_ARGUMENT", None), TokenState.PERMANENT, "INVALID_ARGUMENT", None),
        (QUOTA_EXCEEDED, TokenState.TRANSIENT, "QUOTA_EXCEEDED", 7.0),
        (UNAVAILABLE, TokenState.TRANSIENT, "UNAVAILABLE", None),
        (
            FcmFailure(503, "UNAVAILABLE", "UNAVAILABLE", retry_after="30"),
            TokenState.TRANSIENT,
            "UNAVAILABLE",
            30.0,
        ),
        (INTERNAL, TokenState.TRANSIENT, "INTERNAL", None),
        (FcmFailure(502, "", None), TokenState.TRANSIENT, "HTTP 502", None),
    ],
)
async def test_fcm_errors_are_classified(
    client: FcmClient,
    fake: FakeFcm,
    failure: FcmFailure,
    state: TokenState,
    reason: str,
    retry_after_s: float | None,
) -> None:
    fake.fail_device("bad", failure)
    results = await client.push(note(), ["good-1", "bad", "good-2"])
    assert results == [
        TokenResult("good-1", TokenState.ACCEPTED),
        TokenResult("bad", state, reason, retry_after_s),
        TokenResult("good-2", TokenState.ACCEPTED),
    ]


async def test_an_invalid_argument_that_only_says_the_token_is_bad_is_dead(
    client: FcmClient, fake: FakeFcm
) -> None:
    fake.fail_device(
        "old",
        FcmFailure(
            400,
            "INVALID_ARGUMENT",
            None,
            message="The registration token is not a valid FCM registration token",
        ),
    )
    [result] = await client.push(note(), ["old"])
    assert (result.state, result.reason) == (TokenState.DEAD, "INVALID_ARGUMENT")


async def test_the_next_n_messages_fail_then_the_rest_pass(
    client: FcmClient, fake: FakeFcm
) -> None:
    fake.fail_next(2, INTERNAL)
    first = await client.push(note(), ["a", "b", "c"])
    second = await client.push(note(), ["d"])
    assert sorted(r.state for r in first) == [
        TokenState.ACCEPTED,
        TokenState.TRANSIENT,
        TokenState.TRANSIENT,
    ]
    assert second[0].state is TokenState.ACCEPTED


async def test_a_wrong_project_is_permanent(fake: FakeFcm, clock: Clock, tmp_path: Path) -> None:
    path = fake.write_credentials(tmp_path / "sa.json", project_id="someone-else")
    fcm = FcmClient("fcm", load_service_account(str(path)), endpoint=fake.endpoint, clock=clock)
    try:
        [result] = await fcm.push(note(), ["tok"])
    finally:
        await fcm.aclose()
    assert (result.state, result.reason) == (TokenState.PERMANENT, "SENDER_ID_MISMATCH")
    assert fake.messages()[0].project == "someone-else"


async def test_a_stalled_send_times_out_as_transient(
    fake: FakeFcm, clock: Clock, tmp_path: Path
) -> None:
    account = load_service_account(str(fake.write_credentials(tmp_path / "sa.json")))
    fcm = FcmClient("fcm", account, endpoint=fake.endpoint, timeout_s=0.5, clock=clock)
    fake.stall()
    try:
        started = trio.current_time()
        results = await fcm.push(note(), ["t1", "t2"])
        elapsed = trio.current_time() - started
        assert fake.waiting == 2
    finally:
        fake.release()
        await fcm.aclose()
    assert states(results) == [
        ("t1", TokenState.TRANSIENT, "timeout"),
        ("t2", TokenState.TRANSIENT, "timeout"),
    ]
    assert 0.5 <= elapsed < 1.5
    await wait_until(lambda: fake.waiting == 0, 5.0, "held requests released")


async def test_an_unreachable_endpoint_is_transient(
    fake: FakeFcm, clock: Clock, tmp_path: Path
) -> None:
    account = load_service_account(str(fake.write_credentials(tmp_path / "sa.json")))
    with closed_port() as port:
        fcm = FcmClient("fcm", account, endpoint=f"http://127.0.0.1:{port}", clock=clock)
        try:
            [result] = await fcm.push(note(), ["tok"])
        finally:
            await fcm.aclose()
    assert result.state is TokenState.TRANSIENT
    assert result.reason.startswith("connection: ")


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:00 GMT", now) == 1_700_000_040.0 - now
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None
    assert parse_retry_after(None, now) is None


# -- the access token ----------------------------------------------------------


async def test_the_access_token_is_cached_across_pushes(client: FcmClient, fake: FakeFcm) -> None:
    for i in range(3):
        await client.push(note(id=f"n-{i}"), ["a", "b"])
    assert fake.token_exchanges == client.token_exchanges == 1
    assert len({m.access_token for m in fake.messages()}) == 1
    assert all(m.http_status == 200 for m in fake.messages())


async def test_the_access_token_is_refreshed_shortly_before_it_expires(
    client: FcmClient, fake: FakeFcm, clock: Clock
) -> None:
    fake.set_expires_in(3600)
    await client.push(note(), ["tok"])
    clock.advance(3600 - REFRESH_MARGIN_S - 1)
    await client.push(note(), ["tok"])
    assert fake.token_exchanges == 1
    clock.advance(2)  # now within the margin: still valid at the fake, but replaced
    await client.push(note(), ["tok"])
    assert fake.token_exchanges == 2
    used = [m.access_token for m in fake.messages()]
    assert used[0] == used[1] != used[2]
    assert [m.http_status for m in fake.messages()] == [200, 200, 200]


async def test_a_401_refreshes_once_and_the_message_then_passes(
    client: FcmClient, fake: FakeFcm
) -> None:
    await client.push(note(), ["warm-up"])
    fake.revoke_access_tokens()
    results = await client.push(note(), [f"tok-{i}" for i in range(8)])
    assert {r.state for r in results} == {TokenState.ACCEPTED}
    # Eight concurrent 401s, one refresh between them.
    assert fake.token_exchanges == 2
    statuses = [m.http_status for m in fake.messages()]
    assert statuses.count(401) == 8
    assert statuses.count(200) == 9


async def test_a_second_401_is_transient_unauthenticated(client: FcmClient, fake: FakeFcm) -> None:
    fake.fail_next(2, UNAUTHENTICATED)
    [result] = await client.push(note(), ["tok"])
    assert (result.state, result.reason) == (TokenState.TRANSIENT, "UNAUTHENTICATED")
    assert fake.token_exchanges == 2
    assert [m.http_status for m in fake.messages()] == [401, 401]


async def test_concurrent_pushes_share_one_exchange(client: FcmClient, fake: FakeFcm) -> None:
    results: list[list[TokenResult]] = []

    async def push(i: int) -> None:
        results.append(await client.push(note(id=f"n-{i}"), [f"{i}-a", f"{i}-b"]))

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(push, i)
    assert fake.token_exchanges == 1
    assert len(fake.messages()) == 10
    assert all(r.state is TokenState.ACCEPTED for batch in results for r in batch)


@pytest.mark.parametrize("http_status", [503, 500, 400])
async def test_a_failing_token_endpoint_makes_every_token_transient(
    client: FcmClient, fake: FakeFcm, http_status: int
) -> None:
    fake.fail_token_exchange(http_status)
    results = await client.push(note(), ["a", "b", "c"])
    assert [r.token for r in results] == ["a", "b", "c"]
    assert {r.state for r in results} == {TokenState.TRANSIENT}
    assert all(r.reason.startswith(f"token exchange: {http_status}") for r in results)
    assert fake.token_exchanges == 1
    assert fake.messages() == []
    # Nothing of the failure is kept: the next call exchanges again and passes.
    fake.fail_token_exchange(None)
    [result] = await client.push(note(), ["a"])
    assert result.state is TokenState.ACCEPTED


async def test_an_untrusted_key_gets_invalid_grant(
    fake: FakeFcm, clock: Clock, tmp_path: Path
) -> None:
    path = fake.write_credentials(tmp_path / "sa.json", trusted=False)
    fcm = FcmClient("fcm", load_service_account(str(path)), endpoint=fake.endpoint, clock=clock)
    try:
        [result] = await fcm.push(note(), ["tok"])
    finally:
        await fcm.aclose()
    assert result.state is TokenState.TRANSIENT
    assert result.reason == "token exchange: 400 invalid_grant"


async def test_an_unreachable_token_endpoint_is_transient(
    fake: FakeFcm, clock: Clock, tmp_path: Path
) -> None:
    with closed_port() as port:
        token_uri = f"http://127.0.0.1:{port}/token"
        path = fake.write_credentials(tmp_path / "sa.json", token_uri=token_uri)
        fcm = FcmClient("fcm", load_service_account(str(path)), endpoint=fake.endpoint, clock=clock)
        try:
            results = await fcm.push(note(), ["a", "b"])
        finally:
            await fcm.aclose()
    assert {r.state for r in results} == {TokenState.TRANSIENT}
    assert all(r.reason.startswith("token exchange: connection: ") for r in results)


async def test_the_assertion_carries_the_documented_claims(
    fake: FakeFcm, tmp_path: Path, clock: Clock
) -> None:
    import jwt

    account = load_service_account(str(fake.write_credentials(tmp_path / "sa.json")))
    assertion = account.assertion(clock.now)
    assert jwt.get_unverified_header(assertion) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": account.private_key_id,
    }
    claims = jwt.decode(
        assertion,
        account.private_key.public_key(),
        algorithms=["RS256"],
        audience=fake.token_uri,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        "iss": account.client_email,
        "scope": FCM_SCOPE,
        "aud": fake.token_uri,
        "iat": int(clock.now),
        "exp": int(clock.now) + 3600,
    }


# -- the service-account file --------------------------------------------------


def service_account_document(tmp_path: Path) -> dict[str, str]:
    path = FakeFcm().write_credentials(tmp_path / "good.json", token_uri="https://example/token")
    return dict(orjson.loads(path.read_bytes()))


def test_a_good_file_loads(tmp_path: Path) -> None:
    document = service_account_document(tmp_path)
    account = load_service_account(str(tmp_path / "good.json"))
    assert account.project_id == document["project_id"]
    assert account.client_email == document["client_email"]
    assert account.private_key_id == document["private_key_id"]
    assert account.token_uri == document["token_uri"]
    assert account.private_key.key_size == 2048


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load_service_account(path)
    assert (caught.value.variable, caught.value.value) == ("FCM_CREDENTIALS_FILE", path)


def test_a_file_that_is_not_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not a JSON file"):
        load_service_account(str(path))


@pytest.mark.parametrize(
    "field", ["type", "project_id", "private_key_id", "private_key", "client_email", "token_uri"]
)
def test_a_missing_field_is_named(tmp_path: Path, field: str) -> None:
    document = service_account_document(tmp_path)
    del document[field]
    path = tmp_path / "sa.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(ConfigError, match=f"no '{field}'"):
        load_service_account(str(path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "authorized_user"}, "not 'service_account'"),
        ({"private_key": "not a key"}, "not a PEM private key"),
        ({"token_uri": "ftp://example"}, "token_uri"),
        (
            {
                "private_key": ec.generate_private_key(ec.SECP256R1())
                .private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                .decode()
            },
            "not an RSA key",
        ),
    ],
)
def test_a_bad_value_is_a_config_error(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    document = {**service_account_document(tmp_path), **change}
    path = tmp_path / "sa.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(ConfigError, match=message):
        load_service_account(str(path))


def test_a_json_array_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text("[]")
    with pytest.raises(ConfigError, match="not an object"):
        load_service_account(str(path))


def test_the_fake_serves_and_is_scripted_from_another_thread(tmp_path: Path) -> None:
    fake = FakeFcm()
    with in_thread(fake) as port:
        assert fake.endpoint == f"http://127.0.0.1:{port}"
        account = load_service_account(str(fake.write_credentials(tmp_path / "sa.json")))
        fake.fail_device("gone", UNREGISTERED)

        async def push() -> list[TokenResult]:
            fcm = FcmClient("fcm", account, endpoint=fake.endpoint, timeout_s=5.0)
            try:
                return await fcm.push(note(), ["gone", "here"])
            finally:
                await fcm.aclose()

        results = trio.run(push)
    assert [r.state for r in results] == [TokenState.DEAD, TokenState.ACCEPTED]
    assert sorted(m.http_status for m in fake.messages()) == [200, 404]
    assert fake.token_exchanges == 1
