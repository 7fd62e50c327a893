"""Close the connection after an error answered to a request that came with a body.

Hypercorn (0.18, with Quart-Trio) wedges a keep-alive connection when the app
answers early (401 from the token check, 404, 405) before a slowly arriving request
body has been read: the rest of the body is never drained, the next request on that
connection is never answered, and the socket stays in CLOSE-WAIT, one leaked file
descriptor each. An error response to a request that announced a body therefore
says ``Connection: close``: the server ends the connection after the answer, and
the client opens a fresh one. Successful answers keep their connection.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio


def _announces_body() -> bool:
    length = request.headers.get("Content-Length", "")
    return (length.strip() not in ("", "0")) or "Transfer-Encoding" in request.headers


def install_early_close(app: QuartTrio) -> None:
    """Register the after-request hook on ``app``."""

    @app.after_request
    async def close_after_error(response: Response) -> Response:
        if response.status_code >= 400 and _announces_body():
            response.headers["Connection"] = "close"
        return response
