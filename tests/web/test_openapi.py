"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from pushtrio.contract.errors import InvalidNotification
from pushtrio.contract.notification import parse_notification
from pushtrio.web.app import create_app

from .conftest import TOKEN, Running, make_handles, openapi_document

OPERATIONS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
AUTOMATIC = {"HEAD", "OPTIONS"}


def served_routes() -> dict[str, set[str]]:
    """``{openapi path: {methods}}`` from the app's URL map (a WebSocket is its GET)."""
    app = create_app(make_handles())
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        methods = (
            {"get"}
            if rule.websocket
            else {m.lower() for m in (rule.methods or ()) if m not in AUTOMATIC}
        )
        routes.setdefault(path, set()).update(methods)
    return routes


def documented_routes(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {name for name in item if name in OPERATIONS}
        for path, item in document["paths"].items()
    }


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, name, item[name])
        for path, item in document["paths"].items()
        for name in set(item) & OPERATIONS
    ]


@pytest.mark.parametrize("secured", [False, True])
def test_every_route_is_documented_and_nothing_else(secured: bool) -> None:
    routes = served_routes()
    assert "/ratelimit/{user_id}" in routes
    assert routes["/ws/events"] == {"get"}
    assert routes == documented_routes(openapi_document(secured=secured))


@pytest.mark.parametrize("secured", [False, True])
def test_the_document_is_well_formed(secured: bool) -> None:
    document = openapi_document(secured=secured)
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] == "pushtrio"
    for ref in refs(document):
        assert resolve(document, ref), ref
    for path, name, operation in operations(document):
        assert operation["summary"], (path, name)
        assert operation["responses"], (path, name)
    for path, name, operation in operations(document):
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert sorted(re.findall(r"{([^}]+)}", path)) == sorted(declared), (path, name)


def test_bearer_security_is_declared_only_with_a_token() -> None:
    secured = openapi_document(secured=True)
    assert secured["security"] == [{"bearer": []}]
    assert secured["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, name, operation in operations(secured):
        public = operation.get("security") == []
        assert public == (path in {"/", "/health"}), (path, name)
        assert ("401" in operation["responses"]) != public, (path, name)
    feed = secured["paths"]["/ws/events"]["get"]
    assert "token" in {parameter["name"] for parameter in feed["parameters"]}

    open_ = openapi_document(secured=False)
    assert "security" not in open_
    assert "securitySchemes" not in open_["components"]
    for path, name, operation in operations(open_):
        assert "401" not in operation["responses"], (path, name)
    feed = open_["paths"]["/ws/events"]["get"]
    assert "token" not in {parameter["name"] for parameter in feed["parameters"]}


async def test_the_served_document_is_the_same(served: Running, secured: Running) -> None:
    async with served.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document(secured=False)
    async with secured.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document(secured=True)


TAKEN = [
    "2030-01-01T00:00:00Z",
    "2030-01-01t00:00:00z",
    "2030-01-01 00:00:00.123456789+05:30",
    "2024-02-29T23:59:59-23:59",
    "2000-02-29T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
]
REFUSED = [
    "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2030-04-31T00:00:00Z",
    "2030-13-01T00:00:00Z",
    "2030-01-01T24:00:00Z",
    "2030-01-01T00:00:60Z",  # a leap second: RFC 3339 allows it, Python's datetime does not
    "2030-01-01T00:00:00+24:00",
    "2030-01-01T00:00:00",
    "2030-01-01T00:00Z",
    "0000-01-01T00:00:00Z",
    "2030-01-01",
    "",
]


def test_timestamps_are_documented_as_date_time() -> None:
    properties = openapi_document()["components"]["schemas"]["NotificationDocument"]["properties"]
    for name in ("created_at", "expires_at"):
        (timestamp,) = [s for s in properties[name]["anyOf"] if s.get("type") == "string"]
        assert timestamp["format"] == "date-time"


@pytest.mark.parametrize("value", TAKEN + REFUSED)
def test_the_model_takes_rfc_3339_with_a_zone(value: str) -> None:
    raw = orjson.dumps({"user_id": "u1", "title": "t", "created_at": value})
    try:
        parse_notification(raw, default_id="d")
    except InvalidNotification:
        taken = False
    else:
        taken = True
    assert taken == (value in TAKEN)
