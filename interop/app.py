"""The ASGI app every interop suite talks to (`python -m plexicorn interop.app:app`).

Routes (any method unless noted):

- ``/``, ``/hello``: ``Hello over HTTP/<version>``; a request body is read and dropped first
  (h2spec sends ``POST /`` with DATA and wants a non-empty 200).
- ``/echo``: the request body streamed back as it arrives.
- ``/trailers``: a body, then trailers ``x-trailer-check: done`` and ``x-body-length``.
- ``/page``: HTML with ``PAGE_RESOURCES`` ``<img>`` subresources ``/res/<n>.svg``.
- ``/res/<n>.svg``: a small SVG.
- ``/bytes?n=N``: N bytes of ``x``, in 16 KiB chunks (flow-control cases).
- ``/headers``: the request headers as a JSON list of ``[name, value]``.
- ``/stall``: no response until the client goes away (or ``STALL_SECONDS``): keeps a stream
  open, so the conformance cases can play with its states. Reads the body.
- ``/sink``: reads no body for ``SINK_SECONDS``, so the stream's receive window stays as the
  request left it (flow-control violation cases), then answers 204.
- ``/delay?ms=N``: ``Hello`` after N milliseconds.
- ``/push``: pushes ``/res/0.svg`` (when the connection allows push), then ``pushed``.
- ``/browser``: the headless Chromium page (``BROWSER_PAGE``): it checks its own protocol, fetches
  the ``PAGE_RESOURCES`` SVGs in parallel, opens ``wss://…/ws/info`` and POSTs what it saw to
  ``/browser/report``; ``GET /browser/report`` waits (up to ``REPORT_WAIT`` seconds) for that
  report and returns it.
- WebSocket ``/ws``: echo, nothing else (what Autobahn's fuzzing client expects).
- WebSocket ``/ws/info``: first a JSON text message ``{"http_version": ..., "scheme": ...}``
  from the scope (the proof that an RFC 8441 WebSocket really ran over HTTP/2), then echo.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PAGE_RESOURCES = 50
# A stalled handler gives up after this long, so a client that never closes cannot leak it.
STALL_SECONDS = 30.0
SINK_SECONDS = 2.0
CHUNK = 16 * 1024

PAGE = ("<!doctype html>\n<meta charset=\"utf-8\"><title>Plexicorn interop</title>\n"
        "<h1 id=\"title\">Plexicorn interop page</h1>\n"
        + "".join(f"<img src=\"/res/{n}.svg\" width=\"8\" height=\"8\" alt=\"{n}\">\n"
                  for n in range(PAGE_RESOURCES))).encode()

# Seconds GET /browser/report waits for the page's report.
REPORT_WAIT = 30.0

BROWSER_SCRIPT = """
const report = (data) => fetch("/browser/report", {method: "POST", body: JSON.stringify(data)});
// Resource Timing entries may be queued after fetch() resolves: wait until all are there.
const resourceProtocols = (count) => new Promise((resolve) => {
  const protocols = {};
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.name.includes("/res/")) protocols[entry.name] = entry.nextHopProtocol;
    }
    if (Object.keys(protocols).length >= count) { observer.disconnect(); resolve(protocols); }
  });
  observer.observe({type: "resource", buffered: true});
});
const nextMessage = (ws) => new Promise((resolve, reject) => {
  ws.onmessage = (event) => resolve(event.data);
  ws.onclose = (event) => reject(new Error(`WebSocket closed: ${event.code}`));
});
// Chromium picks the connection of a WebSocket itself and, rarely, opens a fresh HTTP/1.1 one:
// up to 3 attempts; a server without RFC 8441 fails all of them.
async function websocketOverH2() {
  for (let attempt = 1; ; attempt++) {
    const ws = new WebSocket(`wss://${location.host}/ws/info`);
    const info = JSON.parse(await nextMessage(ws));
    if (info.http_version === "2" || attempt === 3) {
      ws.send("echo over h2");
      const echo = await nextMessage(ws);
      ws.close(1000);
      return {info, echo, attempt};
    }
    ws.close(1000);
  }
}
(async () => {
  const navigation = performance.getEntries()[0].nextHopProtocol;
  const fetches = await Promise.all(Array.from({length: __COUNT__}, async (_, n) => {
    const response = await fetch(`/res/${n}.svg`, {cache: "no-store"});
    await response.text();
    return {status: response.status, serverVersion: response.headers.get("x-http-version")};
  }));
  const protocols = Object.values(await resourceProtocols(__COUNT__));
  await report({navigation, fetches, protocols, websocket: await websocketOverH2()});
})().catch((error) => report({error: String((error && error.stack) || error)}));
"""
BROWSER_PAGE = ("<!doctype html><meta charset=\"utf-8\"><title>Plexicorn browser check</title><script>"
                + BROWSER_SCRIPT.replace("__COUNT__", str(PAGE_RESOURCES)) + "</script>").encode()
_browser_reports: list[bytes] = []
_browser_reported = asyncio.Event()

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
       b'<rect width="8" height="8" fill="#%06x"/></svg>')


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
                + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive) -> bool:
    """Read the request body to its end; False if the client went away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body"):
            return True


async def _until_disconnect(receive: Receive) -> bool:
    """Wait for http.disconnect (True) or STALL_SECONDS (False), reading and dropping the body."""
    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
    try:
        await asyncio.wait_for(wait(), STALL_SECONDS)
        return True
    except TimeoutError:
        return False


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    version = scope["http_version"]
    if path in ("/", "/hello"):
        if await _drain(receive):
            await _respond(send, 200, f"Hello over HTTP/{version}\n".encode())
    elif path == "/echo":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = bool(message.get("more_body"))
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": more})
            if not more:
                return
    elif path == "/trailers":
        if not await _drain(receive):
            return
        body = b"body before the trailers\n"
        can_trail = "http.response.trailers" in scope.get("extensions", {})
        await send({"type": "http.response.start", "status": 200, "trailers": can_trail,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"trailer", b"x-trailer-check")]})
        await send({"type": "http.response.body", "body": body, "more_body": can_trail})
        if can_trail:
            await send({"type": "http.response.trailers", "more_trailers": False,
                        "headers": [(b"x-trailer-check", b"done"),
                                    (b"x-body-length", str(len(body)).encode())]})
    elif path == "/page":
        if await _drain(receive):
            await _respond(send, 200, PAGE, b"text/html; charset=utf-8")
    elif path.startswith("/res/") and path.endswith(".svg"):
        try:
            number = int(path[len("/res/"):-len(".svg")])
        except ValueError:
            number = -1
        if await _drain(receive):
            if 0 <= number < PAGE_RESOURCES:
                await _respond(send, 200, SVG % (number * 0x051F0B % 0xFFFFFF), b"image/svg+xml",
                               [(b"cache-control", b"no-store"), (b"x-http-version", version.encode()),
                                (b"access-control-expose-headers", b"x-http-version")])
            else:
                await _respond(send, 404, b"no such resource\n")
    elif path == "/browser":
        if await _drain(receive):
            await _respond(send, 200, BROWSER_PAGE, b"text/html; charset=utf-8", [(b"cache-control", b"no-store")])
    elif path == "/browser/report" and scope["method"] == "POST":
        report = bytearray()
        while True:
            message = await receive()
            report += message.get("body", b"")
            if not message.get("more_body"):
                break
        _browser_reports.append(bytes(report))
        _browser_reported.set()
        await _respond(send, 204, b"")
    elif path == "/browser/report":
        await _drain(receive)
        try:
            await asyncio.wait_for(_browser_reported.wait(), REPORT_WAIT)
        except TimeoutError:
            await _respond(send, 504, b"no report from the page\n")
            return
        first = _browser_reports.pop(0)
        if not _browser_reports:
            _browser_reported.clear()
        await _respond(send, 200, first, b"application/json")
    elif path == "/bytes":
        size = int(query.get("n", ["0"])[0])
        if not await _drain(receive):
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(size).encode())]})
        sent = 0
        while sent < size:
            chunk = min(CHUNK, size - sent)
            sent += chunk
            await send({"type": "http.response.body", "body": b"x" * chunk, "more_body": sent < size})
        if size == 0:
            await send({"type": "http.response.body", "body": b""})
    elif path == "/headers":
        if await _drain(receive):
            body = json.dumps([[name.decode("latin-1"), value.decode("latin-1")]
                               for name, value in scope["headers"]]).encode()
            await _respond(send, 200, body, b"application/json")
    elif path == "/stall":
        if not await _until_disconnect(receive):
            await _respond(send, 204, b"")
    elif path == "/sink":
        # Reading nothing for a while keeps the stream's receive window where the request left
        # it; afterwards the body is read, so the handler ends soon after its client is gone.
        await asyncio.sleep(SINK_SECONDS)
        if await _drain(receive):
            await _respond(send, 204, b"")
    elif path == "/delay":
        await asyncio.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        if await _drain(receive):
            await _respond(send, 200, b"Hello after a delay\n")
    elif path == "/push":
        if not await _drain(receive):
            return
        if "http.response.push" in scope.get("extensions", {}):
            await send({"type": "http.response.push", "path": "/res/0.svg", "headers": []})
        await _respond(send, 200, b"pushed\n")
    else:
        if await _drain(receive):
            await _respond(send, 404, b"not found\n")


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] not in ("/ws", "/ws/info"):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    if scope["path"] == "/ws/info":
        await send({"type": "websocket.send", "text": json.dumps(
            {"http_version": scope.get("http_version"), "scheme": scope.get("scheme"), "path": scope["path"]})})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
