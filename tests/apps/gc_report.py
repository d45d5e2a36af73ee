"""Reports, as JSON, how the garbage collector of the process serving it is set: its youngest
generation's threshold, and whether an object built at import is frozen (gc.get_objects() lists
only the collected generations, not the permanent one gc.freeze() moves objects to)."""

import gc
import json

BUILT_AT_IMPORT = {"routes": ["/"]}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    report = {"threshold": gc.get_threshold()[0],
              "import_objects_frozen": not any(obj is BUILT_AT_IMPORT for obj in gc.get_objects())}
    body = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
