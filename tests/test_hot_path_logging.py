"""At the default level (info), serving a request makes no debug-logging calls: the issue measured
600,000 `logger.debug` calls for 30,000 HTTP/2 requests, ~2% of a request's cost."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("http2", [True, False], ids=["h2c", "http/1.1"])
def test_requests_make_no_debug_logging_calls_at_info(serve: Any, monkeypatch: pytest.MonkeyPatch,
                                                       http2: bool) -> None:
    running = serve(hello)
    logging.getLogger().setLevel(logging.INFO)
    calls: list[str] = []
    original = logging.Logger.debug

    def counting(self: logging.Logger, *args: Any, **kwargs: Any) -> None:
        calls.append(self.name)
        original(self, *args, **kwargs)

    with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
        assert client.get(running.url + "/").text == "hello"  # connection set up before counting
        monkeypatch.setattr(logging.Logger, "debug", counting)
        for _ in range(50):
            assert client.get(running.url + "/").text == "hello"
        monkeypatch.setattr(logging.Logger, "debug", original)
    # The server runs in this process (a thread): its loggers and hpack's (whose per-field debug
    # calls the server silences) made none; httpx's and httpcore's are the client's.
    assert [name for name in calls if name.startswith(("plexicorn", "hpack"))] == []
