"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

import re
from typing import Any

from pushtrio.web.app import create_app
from pushtrio.web.openapi import openapi_document

from .conftest import Running, make_handles

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


def test_every_route_is_documented_and_nothing_else() -> None:
    routes = served_routes()
    assert "/ratelimit/{user_id}" in routes
    assert routes["/ws/events"] == {"get"}
    assert routes == documented_routes(openapi_document())


def test_the_document_is_well_formed() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] == "pushtrio"
    for ref in refs(document):
        assert resolve(document, ref), ref
    for path, item in document["paths"].items():
        for name in set(item) & OPERATIONS:
            operation = item[name]
            assert operation["summary"], (path, name)
            assert operation["responses"], (path, name)
            public = operation.get("security") == []
            assert public == (path in {"/", "/health"}), (path, name)
            if not public:
                assert "401" in operation["responses"], (path, name)
        for parameter in re.findall(r"{([^}]+)}", path):
            declared = [p["name"] for p in item.get("parameters", []) if p["in"] == "path"]
            assert parameter in declared, path


async def test_the_served_document_is_the_same(served: Running) -> None:
    async with served.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document()
