"""Keep Hypercorn's keep-alive connections usable when an answer beats the request body.

Hypercorn (0.18, with Quart-Trio) can reuse a connection only once the request's
body has arrived. When the app answers before that, the connection is wedged: the
next request on it is never answered, and once the client goes the socket stays in
CLOSE-WAIT, one leaked file descriptor each. One after-request hook settles it for
every request that announced a body:

- an error (401 from the token check, 404, 405, 413...) is answered at once with
  ``Connection: close``: the server ends the connection, the client opens a new one;
- a success (an OPTIONS answered from the headers alone) first reads what is left
  of the body (at most MAX_CONTENT_LENGTH, within BODY_TIMEOUT), so the connection
  stays reusable; a body over the limit closes it instead.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge


def _announces_body() -> bool:
    length = request.headers.get("Content-Length", "")
    return (length.strip() not in ("", "0")) or "Transfer-Encoding" in request.headers


async def settle_request_body(response: Response) -> Response:
    """The after-request hook: close after an error, drain before a success."""
    if not _announces_body():
        return response
    if response.status_code >= 400:
        response.headers["Connection"] = "close"
        return response
    try:
        await request.get_data(cache=False)
    except RequestEntityTooLarge:
        response.headers["Connection"] = "close"
    except HTTPException:  # BODY_TIMEOUT: nothing more to wait for
        pass
    return response


def install_early_close(app: QuartTrio) -> None:
    """Register :func:`settle_request_body` on ``app``."""
    app.after_request(settle_request_body)
