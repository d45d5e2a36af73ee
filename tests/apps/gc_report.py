"""Reports, as JSON, the youngest generation's threshold of the garbage collector of the process
serving it."""

import gc
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"threshold": gc.get_threshold()[0]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
