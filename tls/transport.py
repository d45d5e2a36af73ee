"""TLS over any asyncio byte stream, with ssl.MemoryBIO: TLS logic never touches a socket.

`TLSLayer` is the protocol of the raw (TCP) transport. It runs the handshake, then hands a
`TLSTransport` (the decrypted side) to the protocol its `on_handshake` callback picks, e.g. by
ALPN. Owning this layer, rather than using the event loop's, means that:
- every failed handshake reaches `on_failure` with its reason, on asyncio and uvloop alike
  (their server-side TLS reports nothing to the application);
- the handshake timeout is ours;
- no fixed per-connection buffer is allocated up front (asyncio's takes 256 KiB).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Callable, ClassVar

from ..runtime.closing import linger_close
from ..runtime.states import NamedState

# Decrypted bytes read from the TLS object per call. OpenSSL returns one record per read, and a
# record carries at most 16 KiB (RFC 8446 §5.1): a larger request only makes CPython allocate
# (and, past glibc's mmap threshold, map and unmap) a buffer it then shrinks, once per record.
_READ_SIZE = 16 * 1024


class TLSTransport(asyncio.Transport):
    """The plaintext side of one TLS connection."""

    def __init__(self, layer: TLSLayer) -> None:
        super().__init__()
        self._layer = layer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer.write_plain(data)

    def writelines(self, list_of_data: Any) -> None:
        self._layer.write_plain(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self._layer.close()

    def abort(self) -> None:
        self._layer.abort()

    def is_closing(self) -> bool:
        return self._layer.closing

    def pause_reading(self) -> None:
        self._layer.raw.pause_reading()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        self._layer.raw.resume_reading()  # type: ignore[attr-defined]

    def is_reading(self) -> bool:
        return self._layer.raw.is_reading()  # type: ignore[attr-defined]

    def get_write_buffer_size(self) -> int:
        return self._layer.raw.get_write_buffer_size()  # type: ignore[attr-defined]

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._layer.raw.set_write_buffer_limits(high, low)  # type: ignore[attr-defined]

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._layer.app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._layer.app  # type: ignore[return-value]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        ssl_object = self._layer.ssl_object
        if name == "ssl_object":
            return ssl_object
        if name == "sslcontext":
            return ssl_object.context
        if name == "peercert":
            return ssl_object.getpeercert()
        if name == "cipher":
            return ssl_object.cipher()
        if name == "compression":
            return ssl_object.compression()
        return self._layer.raw.get_extra_info(name, default)


class Phase(NamedState):
    """Where a TLS connection stands; it only moves down this list."""

    __slots__ = ()
    HANDSHAKE: ClassVar[Phase]  # no application protocol yet
    OPEN: ClassVar[Phase]  # decrypting for, and encrypting from, the application protocol
    CLOSING: ClassVar[Phase]  # our last bytes went (alert or close_notify): input dropped while they are read
    CLOSED: ClassVar[Phase]  # the raw connection is gone


Phase.define(HANDSHAKE="handshake", OPEN="open", CLOSING="closing", CLOSED="closed")


class TLSLayer(asyncio.Protocol):
    """The raw side of one TLS connection: handshake, then decrypt and encrypt. Every way it ends
    goes through `_linger` (our last bytes, then close) or `abort`."""

    def __init__(self, context: ssl.SSLContext, *, handshake_timeout: float,
                 on_handshake: Callable[[TLSTransport], asyncio.Protocol],
                 on_failure: Callable[[BaseException, Any], None]) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshake_timeout = handshake_timeout
        self._on_handshake = on_handshake
        self._on_failure = on_failure
        self.raw: asyncio.Transport = None  # type: ignore[assignment]
        self.app: asyncio.Protocol | None = None
        self.transport: TLSTransport | None = None
        self.phase = Phase.HANDSHAKE
        self._timer: asyncio.TimerHandle | None = None  # handshake timeout, then linger

    @property
    def closing(self) -> bool:
        return self.phase is Phase.CLOSING or self.phase is Phase.CLOSED

    # -- raw transport events ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(
            self._handshake_timeout, self._fail, TimeoutError("TLS handshake timed out"))

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering: the peer's last bytes are read and dropped
        self._incoming.write(data)
        if self.phase is Phase.HANDSHAKE:
            self._handshake()
        else:
            self._read_plain()

    def eof_received(self) -> bool | None:
        if self.closing:
            return None  # the peer is done too: close now
        if self.phase is Phase.HANDSHAKE:
            self._fail(ConnectionResetError("peer closed the connection during the TLS handshake"))
            return None
        return self.app.eof_received()  # TLS has no half-close: the raw transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.phase is Phase.HANDSHAKE:
            self._fail(exc or ConnectionResetError("connection lost during the TLS handshake"))
        self.phase = Phase.CLOSED
        if self.app is not None:
            app, self.app = self.app, None
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # -- handshake --------------------------------------------------------------------------
    def _handshake(self) -> None:
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush()  # the alert telling the client why
            self._fail(exc)
            return
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = TLSTransport(self)
        self.phase = Phase.OPEN
        self.app = self._on_handshake(self.transport)
        self.app.connection_made(self.transport)
        if self._incoming.pending:  # application data that came with the handshake's last flight
            self._read_plain()

    def _fail(self, exc: BaseException) -> None:
        """The handshake failed (or timed out, or the peer left during it): report it once, close."""
        if self.phase is not Phase.HANDSHAKE or self._on_failure is None:
            return
        on_failure, self._on_failure = self._on_failure, None  # type: ignore[assignment]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        on_failure(exc, self.raw.get_extra_info("peername") if self.raw is not None else None)
        if self.raw is not None and not self.raw.is_closing():
            self.phase = Phase.CLOSING
            self._linger()

    # -- application data -------------------------------------------------------------------
    def _read_plain(self) -> None:
        chunks = []
        closed = False
        ssl_object = self.ssl_object
        incoming = self._incoming
        while True:
            try:
                chunk = ssl_object.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                closed = True
                break
            except ssl.SSLError:
                self.abort()
                return
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
            if not incoming.pending and not ssl_object.pending():
                # Nothing left to decrypt: OpenSSL takes a record's bytes from the BIO only as
                # it reads the record, so another read could only raise SSLWantReadError (an
                # exception object per received batch, for nothing).
                break
        self._flush()  # reading may produce records to send (TLS 1.3 key updates)
        if chunks and self.app is not None:
            self.app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if closed and self.phase is Phase.OPEN and self.app is not None:
            if not self.app.eof_received():
                self.close()

    def write_plain(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or not data:
            return
        try:
            self.ssl_object.write(data)
        except ssl.SSLError:
            self.abort()
            return
        self._flush()

    def _flush(self) -> None:
        if self._outgoing.pending and self.raw is not None and not self.raw.is_closing():
            self.raw.write(self._outgoing.read())

    def close(self) -> None:
        if self.closing:
            return
        self.phase = Phase.CLOSING
        try:
            self.ssl_object.unwrap()  # queue close_notify
        except (ssl.SSLError, ValueError):
            pass
        self._flush()
        self._linger()

    def _linger(self) -> None:
        # After our last bytes (alert, close_notify): input is dropped while the peer reads them.
        if self._timer is not None:
            self._timer.cancel()
        self._timer = linger_close(self.raw, asyncio.get_running_loop().call_later)

    def abort(self) -> None:
        if not self.closing:
            self.phase = Phase.CLOSING
        self.raw.abort()
