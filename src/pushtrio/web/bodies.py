"""Reading a JSON request body: the checks every endpoint that takes one makes."""

from __future__ import annotations

import orjson
from quart import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..contract.notification import MAX_RECORD_BYTES
from .responses import json_error


def is_json_content_type(mimetype: str) -> bool:
    """``application/json`` or any ``+json`` type (parameters such as charset allowed)."""
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


async def read_json_body() -> object | Response:
    """The request's JSON document, or the 413/415 answer to give instead."""
    if not is_json_content_type(request.mimetype):
        return json_error(415, "Content-Type must be application/json", field=None)
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        return json_error(415, "Content-Encoding is not supported", field=None)
    too_large = json_error(413, f"body is larger than {MAX_RECORD_BYTES} bytes", field=None)
    try:
        body = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        return too_large
    if len(body) > MAX_RECORD_BYTES:
        return too_large
    try:
        document: object = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return json_error(415, f"body is not valid JSON: {exc}", field=None)
    return document
