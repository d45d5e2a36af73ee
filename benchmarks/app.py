"""The minimal ASGI app both servers run in the benchmark.

It does as little as possible so the numbers measure the server, not the app:

- ``/``: 13-byte ``Hello, world!`` with a content-length (no chunking).
- ``/echo``: the request body sent back (read it all, then answer).
- ``/stream``: 1 MiB sent in 64 KiB chunks (exercises flow control and
  backpressure rather than per-request overhead).
- ``/wait``: the response headers, then nothing until the client goes away
  (at most 10 minutes): the open streams of the memory scenario.
- WebSocket ``/ws`` (HTTP/1.1 upgrade or RFC 8441 over HTTP/2): echoes each
  message; ``abuse.py`` floods it with pings.
"""

import asyncio
import contextlib

HELLO = b"Hello, world!"
CHUNK = b"x" * (64 * 1024)
STREAM_CHUNKS = 16  # 16 x 64 KiB = 1 MiB


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        # Answer lifespan explicitly so neither server logs a "lifespan
        # unsupported" warning or spends time on it.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _websocket_echo(receive, send)
        return
    if scope["type"] != "http":
        return

    path = scope["path"]
    if path == "/wait":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        # Some servers hold the headers back until the first body message: send an empty one.
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        # Only http.disconnect comes now (the request had no body); the cap keeps a forgotten
        # stream from living forever.
        with contextlib.suppress(asyncio.TimeoutError):
            while (await asyncio.wait_for(receive(), 600))["type"] != "http.disconnect":
                pass
    elif path == "/echo":
        body = bytearray()
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await _respond(send, bytes(body))
    elif path == "/stream":
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(CHUNK) * STREAM_CHUNKS).encode()),
            ],
        })
        for i in range(STREAM_CHUNKS):
            await send({
                "type": "http.response.body",
                "body": CHUNK,
                "more_body": i < STREAM_CHUNKS - 1,
            })
    else:
        await _respond(send, HELLO)


async def _respond(send, body):
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})


async def _websocket_echo(receive, send):
    message = await receive()  # websocket.connect
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
