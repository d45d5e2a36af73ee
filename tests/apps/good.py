"""The app the CLI tests serve: reports its scope, holds requests open on demand, runs lifespan."""

import asyncio
import json
import os
from pathlib import Path


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Lets a test see that shutdown ran after the process is gone.
                marker = os.environ.get("PLEXICORN_TEST_SHUTDOWN_MARKER")
                if marker:
                    Path(marker).write_text("shutdown complete")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # `path` includes root_path (as uvicorn and Starlette expect): route on what follows it.
    path = scope["path"][len(scope.get("root_path", "")):]
    if path == "/upload":
        # Headers first, so the client knows the request is in flight; the client then decides
        # when the request ends by finishing its body.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": f"received {size} bytes".encode()})
        return
    if path == "/hang":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.Event().wait()  # never set: only a forced stop ends this request
        return
    if path == "/scope":
        body = json.dumps({
            "root_path": scope.get("root_path", ""),
            "path": scope["path"],
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "loop": type(asyncio.get_running_loop()).__module__,
        }).encode()
    else:
        body = f"Hello over HTTP/{scope['http_version']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
