"""The start-up line names the protocols each listener actually serves."""

from __future__ import annotations

import logging
from typing import Any

import pytest


async def app(scope: dict, receive: Any, send: Any) -> None:
    pass


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, "(http/1.1, h2c)"),
    ({"h2c": False}, "(http/1.1)"),
    ({"http": "1.1"}, "(http/1.1)"),
    ({"http": "2"}, "(h2c)"),
], ids=["auto", "no-h2c", "http-1.1", "http-2"])
def test_cleartext_listening_line_names_the_served_protocols(serve: Any, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             settings: dict, expected: str) -> None:
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.INFO, logger="plexicorn.error")
    serve(app, lifespan="off", **settings)
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Listening on")]
    assert len(lines) == 1 and lines[0].endswith(expected), lines
