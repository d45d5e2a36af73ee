"""The app the metrics tests serve.

`/status/N` answers status N; `/hold` answers nothing until the client goes away; `/block?seconds=S`
blocks the worker's event loop (so that concurrent connections go to the other workers); any
other path answers the process id. A WebSocket echoes until the client closes, or, at
`/close/CODE`, is closed by the app with CODE.
"""

import os
import time
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        if path.startswith("/close/"):
            await send({"type": "websocket.close", "code": int(path.rsplit("/", 1)[1])})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
    if path == "/hold":
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    status = int(path.rsplit("/", 1)[1]) if path.startswith("/status/") else 200
    if path == "/block":
        time.sleep(float(parse_qs(scope["query_string"].decode()).get("seconds", ["0"])[0]))
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
