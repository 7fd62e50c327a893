"""ADMIN_TOKEN: every endpoint but /health and the dashboard page needs the bearer token."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected

from pushtrio.web.auth import bearer_token, token_matches

from .conftest import TOKEN, Running, notification, open_feed

# (method, path, body, status with the right token)
PROTECTED: list[tuple[str, str, Any, int]] = [
    ("GET", "/metrics", None, 200),
    ("GET", "/metrics/prometheus", None, 200),
    ("GET", "/ratelimit/u1", None, 200),
    ("DELETE", "/ratelimit/u1", None, 200),
    ("POST", "/send", notification("u1"), 202),
    ("GET", "/openapi.json", None, 200),
    ("GET", "/no-such-endpoint", None, 404),
    ("PUT", "/metrics", None, 405),
]

WRONG = [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": TOKEN},
]


@pytest.mark.parametrize(("method", "path", "body", "status"), PROTECTED)
async def test_protected_endpoints_need_the_token(
    secured: Running, method: str, path: str, body: Any, status: int
) -> None:
    async with secured.client() as client:
        for headers in WRONG:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == {"error": "missing or invalid admin token"}
            assert response.headers["www-authenticate"].startswith("Bearer")
        # The query parameter is for WebSocket handshakes only.
        response = await client.request(method, path, json=body, params={"token": TOKEN})
        assert response.status_code == 401
        for scheme in ("Bearer", "bearer"):
            headers = {"Authorization": f"{scheme} {TOKEN}"}
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (scheme, response.text)


async def test_health_and_dashboard_are_public(secured: Running) -> None:
    async with secured.client() as client:
        health = await client.get("/health")
        page = await client.get("/")
        with_wrong_token = await client.get("/health", headers={"Authorization": "Bearer nope"})
    assert health.status_code == 200
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert with_wrong_token.status_code == 200


async def test_a_method_a_public_path_does_not_serve_is_405_without_the_token(
    secured: Running,
) -> None:
    async with secured.client() as client:
        for method, path in (("TRACE", "/health"), ("POST", "/health"), ("DELETE", "/")):
            response = await client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert "GET" in response.headers["allow"]
        # Elsewhere the token comes first, whatever the method.
        assert (await client.request("TRACE", "/metrics")).status_code == 401


async def test_the_feed_takes_the_token_as_header_or_query_parameter(secured: Running) -> None:
    refused = [
        ("", []),
        ("", [(b"authorization", b"Bearer wrong")]),
        ("token=wrong", []),
        (f"token={TOKEN}", [(b"authorization", b"Bearer wrong")]),
    ]
    with trio.fail_after(20):
        for query, headers in refused:
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_feed(secured.ws, query, headers=headers):
                    pass
            assert rejected.value.status_code == 401
            assert b"missing or invalid admin token" in (rejected.value.body or b"")

        accepted = [
            ("", [(b"authorization", f"Bearer {TOKEN}".encode())]),
            (f"token={TOKEN}", []),
            (f"token={TOKEN}&event=delivered", []),
        ]
        for query, headers in accepted:
            async with open_feed(secured.ws, query, headers=headers) as ws:
                assert not ws.closed


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("") is None
    assert bearer_token(None) is None


def test_token_comparison() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches("ab", "abc")
    assert not token_matches("", "abc")
    assert not token_matches(None, "abc")
    assert token_matches("ünïcode", "ünïcode")
