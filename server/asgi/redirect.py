"""The app behind --redirect-http: every cleartext request gets a 308 to its HTTPS URL."""

from __future__ import annotations

import re
from typing import Any

from .headers import plain_response
from .http import ASGIApp

# A host (name, IPv4 or [IPv6]) with an optional port: anything else is not echoed into a URL.
_HOST = re.compile(rb"(?P<name>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def redirect_to_https(https_port: int) -> ASGIApp:
    port_suffix = b"" if https_port == 443 else b":%d" % https_port

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan: this app has nothing to start
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        match = _HOST.fullmatch(host)
        if match is None:
            # The cycle adds `date`: the head builder runs on every response it sends.
            headers, body = plain_response(400, "missing or invalid Host header", date=None)
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        location = b"https://" + match["name"] + port_suffix + target
        body = b"Moved to " + location + b"\n"
        await send({"type": "http.response.start", "status": 308, "headers": [
            (b"location", location), (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return app
