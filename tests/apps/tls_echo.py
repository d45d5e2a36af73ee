"""Answers every request with its HTTP version and the ASGI "tls" extension, as JSON."""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan "auto": an app that ignores it is run without it
    body = json.dumps({
        "http_version": scope["http_version"],
        "tls": scope.get("extensions", {}).get("tls"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
