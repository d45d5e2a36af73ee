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
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    return json.dumps({
        "type": scope["type"], "client": scope["client"], "scheme": scope["scheme"], "server": scope["server"],
        "http_version": scope["http_version"], "headers": headers,
        "ssl": scope["extensions"].get("tls") is not None,
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
