"""An app that answers with what its scope says about the connection (client, scheme, server,
protocol), as JSON: over HTTP as the response body, over a WebSocket as its one message. The
tests behind proxies assert on it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest


def describe(scope: dict[str, Any]) -> bytes:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:  # repeated fields as one comma list (RFC 9110 §5.3)
        key = name.decode("latin-1")
        headers[key] = headers[key] + ", " + value.decode("latin-1") if key in headers else value.decode("latin-1")
    return json.dumps({
        "type": scope["type"], "client": scope["client"], "scheme": scope["scheme"], "server": scope["server"],
        "http_version": scope["http_version"], "headers": headers,
        "ssl": scope["extensions"].get("tls") is not None, "proxy_protocol": scope["extensions"].get("proxy_protocol"),
    }).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": describe(scope).decode()})
        await send({"type": "websocket.close"})
        return
    while (await receive()).get("more_body"):
        pass
    body = describe(scope)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class LogLines:
    """Log records of one logger, waited for rather than slept on."""

    def __init__(self, caplog: pytest.LogCaptureFixture, logger: str) -> None:
        self.caplog = caplog
        self.logger = logger

    def all(self) -> list[str]:
        return [record.getMessage() for record in self.caplog.records if record.name == self.logger]

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.all() if text in line]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no {self.logger} line with {text!r} in {self.all()}"
            time.sleep(0.01)


def capture(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, logger: str, level: int) -> LogLines:
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(level, logger=logger)
    return LogLines(caplog, logger)


def readme_block(language: str, containing: str) -> str:
    """The one ```language block of the README that contains `containing`: the tests run the
    configuration snippets the README shows, so the two cannot drift apart."""
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    blocks = [block.split("\n```", 1)[0] for block in readme.split(f"\n```{language}\n")[1:]]
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"README.md has {len(found)} {language} blocks containing {containing!r}"
    return found[0] + "\n"


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Point a README snippet at the test's ports and files; each placeholder must be there."""
    for old, new in replacements.items():
        assert old in text, f"the README snippet no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def wait_listening(port: int, process: Any, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, "the proxy exited"
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.02)
