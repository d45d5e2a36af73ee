"""One HTTP/1.1 request/response exchange: the ASGI cycle as response parts for its connection."""

from __future__ import annotations

import os
from typing import Any

from ..asgi.http import ZEROCOPYSEND, ASGIMessageError, ClientDisconnected, HTTPCycle
from .codec import ResponseError
from .owner import ExchangeOwner


class HTTP1Cycle(HTTPCycle):
    __slots__ = ("owner", "target")

    def __init__(self, owner: ExchangeOwner, scope: dict[str, Any], target: bytes,
                 extra_headers: list[tuple[bytes, bytes]], method: str | None = None) -> None:
        HTTPCycle.__init__(self, scope, extra_headers, method)  # without super()'s proxy object
        self.owner = owner
        self.target = target

    def _wire_date(self) -> bytes | None:
        return self.owner.date()

    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.owner.respond(status, headers)

    # The last chunk is queued without waiting: the connection's next response waits for it.
    final_body_waits = False

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        self._wire_body_nowait(body, more_body)
        if more_body:
            await self.owner.drain()

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        owner = self.owner
        try:
            if more_body:
                if body and not self.head:
                    owner.send_body(body)
            else:
                owner.end_response([], b"" if self.head else body)
        except ResponseError:
            # The body does not match the declared content-length: the response cannot be
            # completed, and the client must not wait for the rest.
            self._wire_abort()
            raise

    def _wire_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            self.owner.end_response(headers)
        except ResponseError:
            self._wire_abort()  # short of its content-length, or a trailer field h11 refuses
            raise

    def _wire_early_hint(self, links: list[bytes]) -> None:
        if self.scope["http_version"] != "1.1":
            return  # no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
        self.owner.informational(103, [(b"link", link) for link in links])

    def fail(self) -> None:
        try:
            super().fail()
        except ResponseError:
            # The codec refused what the app sent earlier (bad header, wrong length): it is in
            # its error state and the only way left to end the exchange is to close.
            self._wire_abort()

    async def _wire_zerocopy(self, file: Any, offset: int | None, count: int | None) -> int:
        if ZEROCOPYSEND not in self.scope["extensions"]:
            return await super()._wire_zerocopy(file, offset, count)  # not advertised here (TLS)
        if offset is None:
            offset = file.tell()
        if count is None:
            count = max(os.fstat(file.fileno()).st_size - offset, 0)
        if not count or self.head:
            return 0
        try:
            sent = await self.owner.sendfile(file, offset, count)
        except ResponseError:
            self._wire_abort()  # longer than the declared content-length
            raise
        except BaseException as exc:
            # Part of the file may be out: the framing can no longer be kept.
            self.owner.close(now=True)
            if self.disconnected or isinstance(exc, ConnectionError):
                raise ClientDisconnected("client disconnected") from exc
            raise
        if sent != count:
            self.owner.close(now=True)
            raise ASGIMessageError(f"'http.response.zerocopysend': the file ended after {sent} of {count} bytes")
        return count

    def _wire_abort(self) -> None:
        # A started HTTP/1.1 response can only be cut short by closing the connection.
        self.owner.close()

    def _wire_aborted(self) -> None:
        self.owner.aborted()

    def _wire_consumed(self, size: int) -> None:
        self.owner.consumed()

    def _wire_request_ended(self, answered: bool) -> None:
        # The rest of the body is not read: the connection closes, after the 4xx if queued.
        self.owner.close()

    def _wire_reading_held(self, within: float) -> bool:
        return self.owner.reading_held(within)

    def _wire_receive_waiting(self) -> None:
        self.owner.want_body()

    def _wire_completed_unsent(self) -> None:
        self.owner.completed()
