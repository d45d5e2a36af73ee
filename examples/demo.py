"""A small ASGI app to try Plexicorn with: `make run`, then https://localhost:8443/."""

import json

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>Plexicorn</title>
<h1>Hello from Plexicorn</h1>
<p>This page came over <b id="proto">?</b>.</p>
<script>document.getElementById("proto").textContent =
  performance.getEntriesByType("navigation")[0].nextHopProtocol;</script>
"""


async def app(scope, receive, send):
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
    if scope["path"] == "/echo":
        # Streams the request body back as it arrives.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/scope":
        body = json.dumps({k: v for k, v in scope.items() if k in
                           ("http_version", "method", "scheme", "path", "query_string", "client", "server")},
                          default=lambda v: v.decode("latin-1")).encode()
        content_type = b"application/json"
    else:
        body = PAGE if scope["path"] == "/" else f"Hello over HTTP/{scope['http_version']}\n".encode()
        content_type = b"text/html; charset=utf-8" if scope["path"] == "/" else b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
