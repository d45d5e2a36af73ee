"""The app the process-model tests serve: says which code (VERSION) and which process answered.

`/` answers `VERSION PID`; `/block?seconds=S` blocks the worker's event loop (a hung worker,
or a way to make the other workers take the next connections); `/slow?seconds=S` is a request
still in flight for S seconds; `/hang` never ends; `/spawn` leaves a `sleep 30` running. Lifespan runs; startup fails when
PLEXICORN_TEST_FAIL_STARTUP is set; the import takes PLEXICORN_TEST_IMPORT_SECONDS.
"""

import asyncio
import os
import time
from urllib.parse import parse_qs

VERSION = "old"
time.sleep(float(os.environ.get("PLEXICORN_TEST_IMPORT_SECONDS", "0")))  # a slow import


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("PLEXICORN_TEST_FAIL_STARTUP"):
                    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    seconds = float(parse_qs(scope["query_string"].decode()).get("seconds", ["0"])[0])
    body = f"{VERSION} {os.getpid()}".encode()
    if scope["path"] == "/spawn":
        os.system("sleep 30 &")  # a child that outlives the request (and inherits what it may)
    elif scope["path"] == "/block":
        time.sleep(seconds)
    elif scope["path"] == "/hang":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.Event().wait()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    if scope["path"] == "/slow":  # the head first: the client knows the request is in flight
        await asyncio.sleep(seconds)
    await send({"type": "http.response.body", "body": body})
