"""Closing after our last bytes: a peer that is already gone is a normal end, on TCP and TLS alike."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import struct
import time
from typing import Any

import pytest

from conftest import connect

from plexicorn.runtime.closing import LINGER, linger_close
from plexicorn.tls.transport import TLSLayer


class RawTransport:
    """A raw transport whose peer has reset the connection: shutdown(SHUT_WR) fails with ENOTCONN."""

    def __init__(self, gone: bool) -> None:
        self.gone = gone
        self.calls: list[str] = []

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append("write_eof")
        if self.gone:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def write(self, data: bytes) -> None:
        self.calls.append("write")

    def is_closing(self) -> bool:
        return "abort" in self.calls or "close" in self.calls

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_linger_close_half_closes_then_closes_after_the_linger() -> None:
    raw = RawTransport(gone=False)
    timers: list[tuple[float, Any]] = []
    timer = linger_close(raw, lambda delay, callback: timers.append((delay, callback)) or "timer")  # type: ignore[arg-type,func-returns-value]
    assert raw.calls == ["write_eof", "resume_reading"]
    assert timer == "timer" and timers[0][0] == LINGER
    timers[0][1]()
    assert raw.calls[-1] == "close"


def test_linger_close_on_a_peer_already_gone_aborts_instead_of_raising() -> None:
    raw = RawTransport(gone=True)
    assert linger_close(raw, lambda delay, callback: pytest.fail("no linger timer")) is None  # type: ignore[arg-type]
    assert raw.calls == ["write_eof", "abort"]


def test_tls_close_on_a_peer_already_gone_aborts_instead_of_raising(tls_files: tuple[str, str]) -> None:
    async def scenario() -> list[str]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls_files)
        layer = TLSLayer(context, handshake_timeout=10, on_handshake=lambda transport: pytest.fail("no handshake"),
                         on_failure=lambda exc, peer: None)
        raw = RawTransport(gone=True)
        layer.connection_made(raw)  # type: ignore[arg-type]
        layer.close()  # ENOTCONN from the half-close must not escape
        return raw.calls

    calls = asyncio.run(scenario())
    assert calls[-2:] == ["write_eof", "abort"]


def test_tls_client_resetting_right_after_a_400_leaves_no_traceback_and_no_connection(
        serve: Any, client_ssl_context: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.DEBUG)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        raise AssertionError("a malformed request never reaches the app")

    running = serve(app, tls=True, lifespan="off")
    for _ in range(5):
        sock = connect(running, client_ssl_context(("http/1.1",)))
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, while the server lingers on its half-closed socket
    deadline = time.monotonic() + 5
    while running.call(lambda: len(running.server.context.connections)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.call(lambda: len(running.server.context.connections)) == 0
    problems = [record for record in caplog.records
                if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in record.getMessage()]
    assert problems == []
