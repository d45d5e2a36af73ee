"""One HTTP/1.1 request/response exchange: the ASGI cycle framed by h11."""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
from h11._writers import (
    ChunkedWriter,  # h11 exposes no public way to ask how a body is framed
)

from ..asgi.http import FILE_CHUNK, ASGIMessageError, ClientDisconnected, HTTPCycle

if TYPE_CHECKING:
    from .connection import HTTP1Protocol

logger = logging.getLogger("plexicorn.error")

# Reason phrases, computed once; h11 would otherwise send an empty one.
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class HTTP1Cycle(HTTPCycle):
    __slots__ = ("protocol", "target", "head")

    def __init__(self, protocol: HTTP1Protocol, scope: dict[str, Any], target: bytes,
                 method: str | None = None) -> None:
        super().__init__(scope, protocol.info.response_headers, method)
        self.protocol = protocol
        self.target = target
        self.head = self.method == "HEAD"

    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        protocol = self.protocol
        headers.insert(0, (b"date", protocol.context.date_header()))
        # A client still waiting for 100 Continue holds its body back, so we will close rather
        # than read it: say so (RFC 9110 §10.1.1), or it may reuse the connection.
        if protocol.last_response or protocol.conn.they_are_waiting_for_100_continue:
            headers.append((b"connection", b"close"))
        protocol.send_event(h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b"")))

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        self._wire_body_nowait(body, more_body)
        if more_body:
            await self.protocol.outbox.drain()

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        protocol = self.protocol
        try:
            if body and not self.head:
                protocol.send_event(h11.Data(data=body))
            if not more_body:
                protocol.send_event(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # The body does not match the declared content-length: the response cannot be
            # completed, and the client must not wait for the rest.
            self._wire_abort()
            raise
        if not more_body:
            protocol.response_complete(self)

    def _wire_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        protocol = self.protocol
        if headers and not isinstance(protocol.conn._writer, ChunkedWriter):
            # Only a chunked body has room for a trailer section (RFC 9112 §7.1.2); with a
            # content-length (or HEAD, HTTP/1.0) the response still completes, without them.
            logger.debug("dropping response trailers: the response to %s is not chunked", self.target)
            headers = []
        try:
            protocol.send_event(h11.EndOfMessage(headers=headers))
        except h11.LocalProtocolError:
            self._wire_abort()  # short of its content-length, or a trailer field h11 refuses
            raise
        protocol.response_complete(self)

    def _wire_early_hint(self, links: list[bytes]) -> None:
        protocol = self.protocol
        if self.scope["http_version"] != "1.1":
            return  # no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
        conn = protocol.conn
        # h11 takes any 1xx as the answer to `Expect: 100-continue`; a 103 is not (RFC 9110 §10.1.1).
        waiting = conn.client_is_waiting_for_100_continue
        protocol.send_event(h11.InformationalResponse(
            status_code=103, headers=[(b"link", link) for link in links], reason=b"Early Hints"))
        conn.client_is_waiting_for_100_continue = waiting

    def fail(self) -> None:
        try:
            super().fail()
        except h11.LocalProtocolError:
            # h11 refused what the app sent earlier (bad header, wrong length): it is in
            # its ERROR state and the only way left to end the exchange is to close.
            self._wire_abort()

    async def _wire_zerocopy(self, file: Any, offset: int | None, count: int | None) -> int:
        protocol = self.protocol
        if not protocol.sendfile_ok:
            return await super()._wire_zerocopy(file, offset, count)
        if offset is None:
            offset = file.tell()
        if count is None:
            count = max(os.fstat(file.fileno()).st_size - offset, 0)
        if not count or self.head:
            return 0
        # h11 frames a body it never sees: it counts the placeholder's length (content-length,
        # chunk size) and hands it back among the framing bytes, where the file goes instead.
        placeholder = _FileRange(count)
        try:
            pieces = protocol.conn.send_with_data_passthrough(h11.Data(data=placeholder))  # type: ignore[arg-type]
        except h11.LocalProtocolError:
            self._wire_abort()  # longer than the declared content-length
            raise
        outbox = protocol.outbox
        for piece in pieces:  # type: ignore[union-attr]
            if piece is not placeholder:
                outbox.write(piece)
                continue
            outbox.write_now()  # the framing must precede the file on the socket
            try:
                sent = await self._sendfile(file, offset, count)
            except BaseException as exc:
                # Part of the file may be out: the framing can no longer be kept.
                protocol.abort()
                if self.disconnected or isinstance(exc, ConnectionError):
                    raise ClientDisconnected("client disconnected") from exc
                raise
            if sent != count:
                protocol.abort()
                raise ASGIMessageError(f"'http.response.zerocopysend': the file ended after {sent} of {count} bytes")
        return count

    async def _sendfile(self, file: Any, offset: int, count: int) -> int:
        protocol = self.protocol
        loop = protocol.runtime.loop
        # Anything else written meanwhile (a 100 Continue) waits: the transport is the sendfile's.
        protocol.outbox.hold()
        try:
            # asyncio waits for the transport's buffer to empty, then os.sendfile (or read/write).
            return await loop.sendfile(protocol.transport, file, offset, count)  # type: ignore[arg-type]
        except NotImplementedError:
            pass  # uvloop has no loop.sendfile: copy through the outbox, reading off the loop
        finally:
            protocol.outbox.release()
        fd = file.fileno()
        sent = 0
        while sent < count:
            chunk = await loop.run_in_executor(None, os.pread, fd, min(FILE_CHUNK, count - sent), offset + sent)
            if not chunk:
                break
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            protocol.outbox.write(chunk)
            sent += len(chunk)
            await protocol.outbox.drain()
        file.seek(offset + sent)  # where loop.sendfile leaves it
        return sent

    def _wire_abort(self) -> None:
        # A started HTTP/1.1 response can only be cut short by closing the connection.
        self.protocol.outbox.close_after_flush()

    def _wire_consumed(self, size: int) -> None:
        self.protocol.update_reading()

    def _wire_receive_waiting(self) -> None:
        protocol = self.protocol
        if protocol.conn.they_are_waiting_for_100_continue:
            protocol.send_event(h11.InformationalResponse(status_code=100, headers=[], reason=REASONS[100]))
        protocol.update_reading()


class _FileRange:
    """Stands for the file bytes in h11's output: only its length matters to h11."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


