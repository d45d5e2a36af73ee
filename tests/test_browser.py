"""A real browser against Plexicorn: headless Chromium loads a page over HTTP/2 with TLS, fetches
many resources on that connection and opens a wss:// WebSocket that Chromium carries over the
same HTTP/2 connection (RFC 8441 extended CONNECT). The page's JavaScript does the work and
POSTs what it saw to /report; the server side records every scope it was given."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from interop.browser import INSTALL_HINT, Chromium, find_chromium, spki_sha256

CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=INSTALL_HINT),
    pytest.mark.timeout(60),  # generous; a run takes a few seconds
]

REPORT_TIMEOUT = 20.0
RESOURCES = 50

REPORTING = """
const report = (data) => fetch("/report", {method: "POST", body: JSON.stringify(data)});
const fail = (error) => report({error: String((error && error.stack) || error)});
window.addEventListener("error", (event) => fail(event.message));
window.addEventListener("unhandledrejection", (event) => fail(event.reason));
function navigation() {
  const entry = performance.getEntries()[0];
  return {entryType: entry.entryType, name: entry.name, nextHopProtocol: entry.nextHopProtocol};
}
"""

FETCHES_SCRIPT = REPORTING + """
// Resource Timing entries are queued once each body is read, possibly after fetch() resolved:
// wait for all of them rather than reading getEntries() too early.
function resourceProtocols(count) {
  return new Promise((resolve) => {
    const protocols = {};
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        if (entry.name.includes("/resource/")) protocols[entry.name] = entry.nextHopProtocol;
      }
      if (Object.keys(protocols).length >= count) {
        observer.disconnect();
        resolve(protocols);
      }
    });
    observer.observe({type: "resource", buffered: true});
  });
}

(async () => {
  const responses = await Promise.all(Array.from({length: __COUNT__}, async (_, index) => {
    const response = await fetch(`/resource/${index}`, {cache: "no-store"});
    return {index, status: response.status, body: await response.text()};
  }));
  const protocols = await resourceProtocols(__COUNT__);
  await report({navigation: navigation(), responses, protocols});
})().catch(fail);
""".replace("__COUNT__", str(RESOURCES))

WEBSOCKET_SCRIPT = REPORTING + """
function opened(ws) {
  return new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onclose = (event) => reject(new Error(`closed before opening: code ${event.code}`));
  });
}
function nextMessage(ws) {
  return new Promise((resolve, reject) => {
    ws.onmessage = (event) => resolve(event.data);
    ws.onclose = (event) => reject(new Error(`closed before the echo: code ${event.code}`));
  });
}
function closed(ws) {
  return new Promise((resolve) => { ws.onclose = (event) => resolve({code: event.code, reason: event.reason}); });
}

// Chromium picks the connection for a WebSocket itself: rarely (seen about once in 50 runs on a
// loaded machine) it opens a fresh HTTP/1.1 one, which the server refuses (403), so try up to 3
// times. A server without RFC 8441 fails all three.
async function openOverH2() {
  for (let attempt = 1; ; attempt++) {
    const ws = new WebSocket(`wss://${location.host}/echo`);
    try {
      await opened(ws);
      return {ws, attempt};
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

(async () => {
  const {ws, attempt} = await openOverH2();
  ws.send("hello over h2");
  const echo = await nextMessage(ws);
  const closing = closed(ws);
  ws.close(1000, "done");
  const close = await closing;
  await report({navigation: navigation(), echo, extensions: ws.extensions, close, attempt});
})().catch(fail);
"""

PAGES = {"/fetches": FETCHES_SCRIPT, "/websocket": WEBSOCKET_SCRIPT}


class BrowserTestApp:
    """Serves the test pages, their resources and a WebSocket echo; records every scope and
    the page's report. Runs on the server's loop; the test thread waits on threading.Events."""

    def __init__(self) -> None:
        self.http_scopes: dict[str, dict[str, Any]] = {}
        self.websocket_scopes: list[dict[str, Any]] = []
        self.websocket_disconnects: list[dict[str, Any]] = []
        self.report: dict[str, Any] | None = None
        self.reported = threading.Event()
        self.websocket_ended = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)

    async def http(self, scope, receive, send) -> None:
        # Copied before the app touches anything, so the test sees what the server built.
        self.http_scopes[scope["path"]] = copy.deepcopy(scope)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path in PAGES:
            html = f"<!doctype html><title>{path}</title><script>{PAGES[path]}</script>"
            await self.respond(send, 200, html.encode(), b"text/html; charset=utf-8")
        elif path.startswith("/resource/"):
            await self.respond(send, 200, f"resource {path.rsplit('/', 1)[1]}".encode(), b"text/plain")
        elif path == "/report" and scope["method"] == "POST":
            self.report = json.loads(body)
            await self.respond(send, 204, b"", b"text/plain")
            self.reported.set()
        else:  # e.g. /favicon.ico
            await self.respond(send, 404, b"not found", b"text/plain")

    @staticmethod
    async def respond(send, status: int, body: bytes, content_type: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    async def websocket(self, scope, receive, send) -> None:
        self.websocket_scopes.append(copy.deepcopy(scope))
        if scope["http_version"] != "2":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"HTTP/2 only"})
            return  # not the end the test waits for: the page tries again
        try:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.websocket_disconnects.append(message)
                    return
                echo = {"text": message["text"]} if message.get("text") is not None else {"bytes": message["bytes"]}
                await send({"type": "websocket.send", **echo})
        finally:
            self.websocket_ended.set()


@pytest.fixture
def chromium_trust(tls_files: tuple[str, str]) -> list[str]:
    """Pins the server's leaf key, so Chromium accepts its certificate as a valid one."""
    return [spki_sha256(Path(tls_files[0]).read_bytes())]


def run_page(serve, chromium_trust: list[str], path: str) -> tuple[Any, BrowserTestApp, dict[str, Any]]:
    app = BrowserTestApp()
    running = serve(app, tls=True)
    url = f"https://127.0.0.1:{running.port}{path}"
    with Chromium(url, executable=CHROMIUM, trusted_spki=chromium_trust) as browser:
        browser.wait(app.reported, REPORT_TIMEOUT)
        report = app.report
        assert report is not None
        assert "error" not in report, f"the page failed: {report['error']}\n{browser.describe()}"
        if path == "/websocket":
            browser.wait(app.websocket_ended, REPORT_TIMEOUT, "the end of the WebSocket on the server")
    return running, app, report


def test_chromium_loads_page_and_50_parallel_fetches_over_http2(serve, chromium_trust):
    running, app, report = run_page(serve, chromium_trust, "/fetches")

    navigation = report["navigation"]
    assert navigation["entryType"] == "navigation"
    assert navigation["nextHopProtocol"] == "h2"
    assert app.http_scopes["/fetches"]["http_version"] == "2"

    responses = report["responses"]
    assert [r["index"] for r in responses] == list(range(RESOURCES))
    assert all(r["status"] == 200 and r["body"] == f"resource {r['index']}" for r in responses), responses
    base = f"https://127.0.0.1:{running.port}/resource/"
    assert report["protocols"] == {f"{base}{i}": "h2" for i in range(RESOURCES)}
    resource_scopes = {path: scope for path, scope in app.http_scopes.items() if path.startswith("/resource/")}
    assert set(resource_scopes) == {f"/resource/{i}" for i in range(RESOURCES)}
    assert {scope["http_version"] for scope in resource_scopes.values()} == {"2"}
    # The 50 fetches are multiplexed on one connection: the same client address on every scope.
    # (Usually the page's; Chromium sometimes keeps a second, speculative connection and uses that.)
    clients = {tuple(scope["client"]) for scope in resource_scopes.values()}
    assert len(clients) == 1


def test_chromium_websocket_runs_over_the_pages_http2_connection(serve, chromium_trust):
    _, app, report = run_page(serve, chromium_trust, "/websocket")

    assert report["navigation"]["nextHopProtocol"] == "h2"
    assert report["echo"] == "hello over h2"
    assert report["close"] == {"code": 1000, "reason": "done"}

    # The attempt that was echoed is the last scope: RFC 8441 extended CONNECT, not an HTTP/1.1 Upgrade.
    assert len(app.websocket_scopes) == report["attempt"]
    scope = app.websocket_scopes[-1]
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/echo"
    assert app.websocket_disconnects == [{"type": "websocket.disconnect", "code": 1000, "reason": "done"}]
