"""An asyncio WebSockets-over-HTTP/2 (RFC 8441) test client on h2 and wsproto's frame layer.

One `H2WSConnection` is one TCP (h2c prior knowledge) or TLS (ALPN h2) connection that carries
any number of WebSockets (extended CONNECT streams) and ordinary requests side by side.

Flow control is real: received DATA is acknowledged only when the test consumes it (a
WebSocket's `receive*()`, a response's `read_all()`), so a test that stops reading a stream
makes the server see a closed window on it. The connection window is opened wide at the start
so that one unread stream cannot starve the others through it, as a browser does.

The WebSocket layer does not answer pings unless asked (`auto_pong=True`), replies to a Close
as RFC 6455 requires, and never sends END_STREAM on its own before the server has ended its
side, so tests can observe when the server ends the stream.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from wsproto.connection import Connection, ConnectionState, ConnectionType

from h2client import RFCClientConnection  # reports a graceful GOAWAY instead of closing (RFC 9113 §6.8)
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate

DEFAULT_TIMEOUT = 5.0
Headers = list[tuple[bytes, bytes]]
HeaderInput = Iterable[tuple[bytes | str, bytes | str]]


class ConnectionLost(ConnectionError):
    """The server closed the TCP/TLS connection while we were waiting for something."""


class StreamReset(Exception):
    """The stream was reset (by the server, or by us) before what we waited for arrived."""

    def __init__(self, code: int) -> None:
        try:
            name = ErrorCodes(code).name
        except ValueError:
            name = str(code)
        super().__init__(f"stream reset with {name}")
        self.code = code


class StreamEnded(Exception):
    """The server ended the stream (END_STREAM) before what we waited for arrived."""


@dataclass(frozen=True)
class Close:
    """A Close frame received from the server."""
    code: int
    reason: str


@dataclass
class Response:
    status: int | None
    headers: Headers
    body: bytes
    reset_code: int | None
    trailers: Headers | None

    def header(self, name: bytes) -> bytes | None:
        return _header(self.headers, name)


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _encode(headers: HeaderInput) -> Headers:
    return [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
            for k, v in headers]


class _Changes:
    """Wakes every waiter whenever the connection's state may have changed; each re-checks its
    own predicate. Simpler than per-condition events and cheap at test scale."""

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)

    async def wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        await future


class H2Stream:
    """One HTTP/2 stream: response headers, unconsumed DATA, and an outbound queue that is
    sent as the server's windows allow."""

    def __init__(self, connection: H2WSConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.status: int | None = None
        self.headers: Headers = []
        self.informational: list[Headers] = []
        self.trailers: Headers | None = None
        self.remote_ended = False  # the server sent END_STREAM
        self.local_ended = False  # we sent END_STREAM (possibly still queued behind data)
        self.reset_code: int | None = None
        self.reset_by_server = False
        # DATA payload bytes as they crossed the wire, for asserting e.g. compression.
        self.bytes_received = 0
        self.bytes_sent = 0
        self.bytes_consumed = 0
        self._inbound: deque[tuple[bytes, int]] = deque()
        self._outbound: deque[memoryview] = deque()
        self._outbound_size = 0
        self._end_queued = False

    # -- state ------------------------------------------------------------------------------------
    @property
    def reset(self) -> bool:
        return self.reset_code is not None

    @property
    def finished(self) -> bool:
        """The server is done with the stream: END_STREAM or RST_STREAM arrived."""
        return self.remote_ended or self.reset

    @property
    def ended_cleanly(self) -> bool:
        """END_STREAM arrived, and no RST_STREAM other than NO_ERROR (RFC 9113 §8.1 lets a server
        that has finished ask the client to stop sending with RST_STREAM NO_ERROR)."""
        return self.remote_ended and self.reset_code in (None, ErrorCodes.NO_ERROR)

    @property
    def unconsumed(self) -> int:
        """Bytes received but not yet consumed (so not yet acknowledged to the server)."""
        return sum(len(data) for data, _ in self._inbound)

    @property
    def pending_send(self) -> int:
        """Bytes queued but held back by the server's flow-control windows."""
        return self._outbound_size

    @property
    def send_window(self) -> int:
        """What the server lets us send on this stream now (0 once closed)."""
        try:
            return self.connection.h2.local_flow_control_window(self.stream_id)
        except h2.exceptions.StreamClosedError:
            return 0

    def header(self, name: bytes) -> bytes | None:
        return _header(self.headers, name)

    # -- waiting ----------------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        await self.connection.wait_for(predicate, timeout)

    async def wait_response(self, timeout: float | None = None) -> int:
        """Wait for the final response HEADERS; return :status."""
        await self.wait_for(lambda: self.status is not None or self.finished, timeout)
        if self.status is None:
            if self.reset:
                raise StreamReset(self.reset_code)  # type: ignore[arg-type]
            raise StreamEnded("stream ended before a response")
        return self.status

    async def wait_finished(self, timeout: float | None = None) -> None:
        """Wait for END_STREAM or RST_STREAM from the server (consuming nothing)."""
        await self.wait_for(lambda: self.finished, timeout)

    # -- receiving ------------------------------------------------------------------------------
    async def read_chunk(self, timeout: float | None = None) -> bytes | None:
        """The next DATA payload, acknowledged now that it is consumed; None at END_STREAM.
        Raises StreamReset once all data that preceded a reset (without END_STREAM) is read."""
        await self.wait_for(lambda: bool(self._inbound) or self.finished, timeout)
        if self._inbound:
            data, flow_controlled = self._inbound.popleft()
            self.bytes_consumed += len(data)
            self.connection._acknowledge(self.stream_id, flow_controlled)
            return data
        if self.remote_ended:  # even if RST_STREAM (NO_ERROR) followed the END_STREAM
            return None
        raise StreamReset(self.reset_code)  # type: ignore[arg-type]

    async def read_all(self, timeout: float | None = None) -> bytes:
        """Consume DATA until END_STREAM (raises StreamReset on a reset)."""
        body = bytearray()
        async with asyncio.timeout(timeout or self.connection.timeout):
            while (chunk := await self.read_chunk()) is not None:
                body += chunk
        return bytes(body)

    def open_window(self, increment: int) -> None:
        """Send a WINDOW_UPDATE for this stream: lets the server send `increment` more bytes
        (for a stream opened with a zero initial window, which consuming alone never opens)."""
        self.connection.h2.increment_flow_control_window(increment, stream_id=self.stream_id)
        self.connection.flush()

    # -- sending ----------------------------------------------------------------------------------
    def queue(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue data; it goes out as the server's windows allow, without waiting here."""
        if self.reset:
            raise StreamReset(self.reset_code)  # type: ignore[arg-type]
        if self._end_queued:
            raise RuntimeError("END_STREAM already queued on this stream")
        if data:
            self._outbound.append(memoryview(data))
            self._outbound_size += len(data)
        if end_stream:
            self._end_queued = True
        self.connection._pump()

    async def send(self, data: bytes, *, end_stream: bool = False, timeout: float | None = None) -> None:
        """Queue data and wait until it is all handed to the socket (window permitting)."""
        self.queue(data, end_stream=end_stream)
        await self.wait_for(lambda: self.reset or (not self._outbound and (self.local_ended or not end_stream)),
                            timeout)
        if self.reset and (self._outbound or (end_stream and not self.local_ended)):
            raise StreamReset(self.reset_code)  # type: ignore[arg-type]

    async def end(self, timeout: float | None = None) -> None:
        await self.send(b"", end_stream=True, timeout=timeout)

    async def wait_blocked(self, timeout: float | None = None) -> None:
        """Wait until queued data is held back by a zero stream window."""
        await self.wait_for(lambda: self._outbound_size > 0 and self.send_window <= 0, timeout)

    def reset_stream(self, code: int = ErrorCodes.CANCEL) -> None:
        self.connection.reset(self.stream_id, code)

    def _take(self, size: int) -> bytes:
        """Up to size bytes from the outbound queue (memoryview slicing: no O(n) shuffles)."""
        parts: list[memoryview] = []
        while size > 0 and self._outbound:
            head = self._outbound[0]
            if len(head) <= size:
                parts.append(self._outbound.popleft())
                size -= len(head)
            else:
                parts.append(head[:size])
                self._outbound[0] = head[size:]
                size = 0
        data = b"".join(parts)
        self._outbound_size -= len(data)
        return data


class H2WebSocket:
    """A WebSocket on one extended CONNECT stream, framed by wsproto (client side: masked)."""

    def __init__(self, stream: H2Stream, *, subprotocol: str | None, extensions: list[Extension],
                 auto_pong: bool) -> None:
        self.stream = stream
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.auto_pong = auto_pong
        # Off to play a dead client that never answers the server's Close.
        self.auto_close_reply = True
        self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        self.pings: list[bytes] = []
        self.close_received: Close | None = None
        self.close_sent: tuple[int, str] | None = None
        self._events: deque[Event] = deque()

    @property
    def status(self) -> int | None:
        return self.stream.status

    @property
    def response_headers(self) -> Headers:
        return self.stream.headers

    @property
    def stream_id(self) -> int:
        return self.stream.stream_id

    def header(self, name: bytes) -> bytes | None:
        return self.stream.header(name)

    # -- sending ----------------------------------------------------------------------------------
    async def send_event(self, event: Event, timeout: float | None = None) -> None:
        await self.stream.send(self.ws.send(event), timeout=timeout)

    def queue_event(self, event: Event) -> None:
        """Frame and queue without waiting for the window (for filling a stalled stream)."""
        self.stream.queue(self.ws.send(event))

    async def send_text(self, text: str, timeout: float | None = None) -> None:
        await self.send_event(TextMessage(data=text), timeout)

    async def send_bytes(self, data: bytes, timeout: float | None = None) -> None:
        await self.send_event(BytesMessage(data=data), timeout)

    async def send_fragmented(self, parts: Sequence[str] | Sequence[bytes], timeout: float | None = None) -> None:
        """One message as len(parts) frames: FIN only on the last."""
        for index, part in enumerate(parts):
            finished = index == len(parts) - 1
            event: TextMessage | BytesMessage
            if isinstance(part, str):
                event = TextMessage(data=part, message_finished=finished)
            else:
                assert isinstance(part, (bytes, bytearray))
                event = BytesMessage(data=part, message_finished=finished)
            await self.send_event(event, timeout)

    async def ping(self, payload: bytes = b"", timeout: float | None = None) -> None:
        await self.send_event(Ping(payload=payload), timeout)

    async def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        self.close_sent = (code, reason)
        await self.send_event(CloseConnection(code=code, reason=reason), timeout)

    def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        self.stream.reset_stream(code)

    # -- receiving --------------------------------------------------------------------------------
    async def receive_event(self, timeout: float | None = None) -> Event:
        """The next wsproto event (frames as they are parsed: a large or fragmented message
        comes as several). Pings are answered if auto_pong; a Close is answered as RFC 6455
        requires. Raises StreamEnded/StreamReset if the stream ends first."""
        async with asyncio.timeout(timeout or self.stream.connection.timeout):
            while not self._events:
                chunk = await self.stream.read_chunk()
                if chunk is None:
                    raise StreamEnded("the server ended the stream without a Close frame"
                                      if self.close_received is None else "stream ended after Close")
                if self.ws.state is ConnectionState.CLOSED:
                    continue  # bytes after a Close are ignored, as RFC 6455 says
                self.ws.receive_data(chunk)
                self._events.extend(self.ws.events())
            event = self._events.popleft()
            if isinstance(event, Ping):
                self.pings.append(bytes(event.payload))
                if self.auto_pong and self.ws.state is ConnectionState.OPEN:
                    await self._send_quietly(event.response())
            elif isinstance(event, CloseConnection):
                self.close_received = Close(event.code, event.reason or "")
                if self.ws.state is ConnectionState.REMOTE_CLOSING and self.auto_close_reply:
                    self.close_sent = (event.code, event.reason or "")
                    await self._send_quietly(event.response())
            return event

    async def _send_quietly(self, event: Event) -> None:
        """Protocol replies (Pong, Close echo) to a stream the server may already have reset."""
        try:
            data = self.ws.send(event)
            if not self.stream.reset:
                await self.stream.send(data)
        except (StreamReset, h2.exceptions.StreamClosedError):
            pass

    async def receive(self, timeout: float | None = None) -> str | bytes | Close:
        """The next whole message (str or bytes), or the server's Close. Pings are skipped."""
        async with asyncio.timeout(timeout or self.stream.connection.timeout):
            parts: list[str | bytes] = []
            while True:
                event = await self.receive_event()
                if isinstance(event, CloseConnection):
                    return Close(event.code, event.reason or "")
                if isinstance(event, (Ping, Pong)):
                    continue
                assert isinstance(event, (TextMessage, BytesMessage))
                parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        return "".join(parts)  # type: ignore[arg-type]
                    return b"".join(parts)  # type: ignore[arg-type]

    async def receive_text(self, timeout: float | None = None) -> str:
        message = await self.receive(timeout)
        assert isinstance(message, str), message
        return message

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        message = await self.receive(timeout)
        assert isinstance(message, bytes), message if isinstance(message, Close) else f"{len(message)} chars"
        return message

    async def wait_closed(self, timeout: float | None = None) -> Close:
        """Read (dropping messages) until the server's Close, then wait for its END_STREAM (or
        reset) and end our side too. Returns the server's Close."""
        async with asyncio.timeout(timeout or self.stream.connection.timeout):
            while self.close_received is None:
                await self.receive_event()
            await self.stream.wait_finished()
            if self.stream.remote_ended and not self.stream.reset and not self.stream.local_ended:
                await self.stream.end()
        return self.close_received


class H2WSConnection:
    """A client HTTP/2 connection (see the module docstring)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool,
                 authority: str, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self.tls = tls
        self.authority = authority
        self.timeout = timeout
        self.h2 = RFCClientConnection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, H2Stream] = {}
        self.settings_received = False
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.lost = False
        self.protocol_error: Exception | None = None
        self._changes = _Changes()
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None,
                   server_hostname: str = "localhost", initial_window_size: int = 1024 * 1024,
                   connection_window_size: int = 64 * 1024 * 1024, settings: dict[int, int] | None = None,
                   timeout: float = DEFAULT_TIMEOUT) -> H2WSConnection:
        """Connect (TLS if ssl_context, which must offer ALPN h2) and send the preface.

        initial_window_size: our SETTINGS_INITIAL_WINDOW_SIZE, i.e. what the server may send on a
        stream we do not read. connection_window_size: opened at once, so that unread streams do
        not close the connection window for the others."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=ssl_context, server_hostname=server_hostname if ssl_context else None), timeout)
        if ssl_context is not None:
            alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn != "h2":
                writer.close()
                raise ConnectionError(f"server selected ALPN {alpn!r}, not h2")
        self = cls(reader, writer, tls=ssl_context is not None, authority=server_hostname, timeout=timeout)
        self.h2.initiate_connection()
        local: dict[SettingCodes | int, int] = {SettingCodes.ENABLE_PUSH: 0,
                                                SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size}
        local.update(settings or {})
        self.h2.update_settings(local)
        if connection_window_size > 65535:
            self.h2.increment_flow_control_window(connection_window_size - 65535)
        self.flush()
        self._task = asyncio.create_task(self._read_loop())
        return self

    async def __aenter__(self) -> H2WSConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the socket -------------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    self.protocol_error = exc
                    self.flush()
                    break
                for event in events:
                    self._handle(event)
                self._pump()
                self._changes.notify()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self.lost = True
            for future in self._pings.values():
                if not future.done():
                    future.set_exception(ConnectionLost("connection lost before the PING ack"))
            self._changes.notify()

    def _handle(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received = True
        elif isinstance(event, h2.events.ResponseReceived) and stream:
            stream.headers = list(event.headers)
            stream.status = int(_header(stream.headers, b":status") or 0)
        elif isinstance(event, h2.events.InformationalResponseReceived) and stream:
            stream.informational.append(list(event.headers))
        elif isinstance(event, h2.events.TrailersReceived) and stream:
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            if stream is None or stream.reset:
                # Nobody will consume it: give the connection window back.
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                stream.bytes_received += len(event.data)
                stream._inbound.append((event.data, event.flow_controlled_length))
        elif isinstance(event, h2.events.StreamEnded) and stream:
            stream.remote_ended = True
        elif isinstance(event, h2.events.StreamReset) and stream:
            stream.reset_code = int(event.error_code)
            stream.reset_by_server = event.remote_reset
            self._drop_outbound(stream)
        elif isinstance(event, h2.events.PingAckReceived):
            future = self._pings.pop(event.ping_data, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def _drop_outbound(self, stream: H2Stream) -> None:
        stream._outbound.clear()
        stream._outbound_size = 0

    def _pump(self) -> None:
        """Send queued stream data as far as windows allow, then END_STREAM where queued."""
        for stream in list(self.streams.values()):
            if stream.reset or (not stream._outbound and not (stream._end_queued and not stream.local_ended)):
                continue
            try:
                while stream._outbound:
                    room = min(self.h2.local_flow_control_window(stream.stream_id), self.h2.max_outbound_frame_size)
                    if room <= 0:
                        break
                    chunk = stream._take(room)
                    self.h2.send_data(stream.stream_id, chunk)
                    stream.bytes_sent += len(chunk)
                if not stream._outbound and stream._end_queued and not stream.local_ended:
                    self.h2.end_stream(stream.stream_id)
                    stream.local_ended = True
            except h2.exceptions.StreamClosedError:
                self._drop_outbound(stream)
                if stream.reset_code is None and not stream.remote_ended:
                    stream.reset_code = ErrorCodes.STREAM_CLOSED
        self.flush()
        self._changes.notify()

    def _acknowledge(self, stream_id: int, flow_controlled: int) -> None:
        if flow_controlled and not self.lost:
            self.h2.acknowledge_received_data(flow_controlled, stream_id)
            self.flush()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while not predicate():
                if self.lost:
                    raise ConnectionLost("the server closed the connection")
                await self._changes.wait()

    # -- connection-level -----------------------------------------------------------------------
    async def wait_settings(self, timeout: float | None = None) -> dict[int, int]:
        """The server's SETTINGS, once its first SETTINGS frame has arrived."""
        await self.wait_for(lambda: self.settings_received, timeout)
        return dict(self.h2.remote_settings)

    @property
    def remote_settings(self) -> h2.settings.Settings:
        return self.h2.remote_settings

    async def ping(self, timeout: float | None = None) -> None:
        """PING round trip: once acked, the server has processed all we sent before it."""
        data = os.urandom(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[data] = future
        self.h2.ping(data)
        self.flush()
        await asyncio.wait_for(future, self.timeout if timeout is None else timeout)

    def reset(self, stream_id: int, code: int = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM."""
        stream = self.streams.get(stream_id)
        self.h2.reset_stream(stream_id, code)
        if stream is not None:
            stream.reset_code = int(code)
            self._drop_outbound(stream)
        self.flush()
        self._changes.notify()

    def abort(self) -> None:
        """Drop the TCP connection without GOAWAY (the client 'disappears')."""
        self._writer.transport.abort()

    async def aclose(self) -> None:
        if not self.lost and not self._writer.is_closing():
            try:
                self.h2.close_connection()
                self.flush()
            except h2.exceptions.ProtocolError:
                pass  # the connection is already in a state that forbids GOAWAY
        self._writer.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1)
        except (OSError, TimeoutError):
            pass  # the server may already have gone

    # -- streams ----------------------------------------------------------------------------------
    def open_stream(self, headers: HeaderInput, *, end_stream: bool = False,
                    validate: bool = True) -> H2Stream:
        """Send a HEADERS frame as given (pseudo-headers included) on a new stream."""
        stream_id = self.h2.get_next_available_stream_id()
        stream = H2Stream(self, stream_id)
        self.streams[stream_id] = stream
        if not validate:
            # For header blocks h2 would refuse to send (the server must reject them itself).
            self.h2.config.validate_outbound_headers = False
        try:
            self.h2.send_headers(stream_id, _encode(headers), end_stream=end_stream)
        finally:
            self.h2.config.validate_outbound_headers = True
        stream.local_ended = end_stream
        stream._end_queued = end_stream
        self.flush()
        return stream

    def start_request(self, method: str = "GET", path: str = "/", *, headers: HeaderInput = (),
                      body: bytes = b"", end_stream: bool = True) -> H2Stream:
        block: HeaderInput = [(":method", method), (":scheme", "https" if self.tls else "http"),
                              (":path", path), (":authority", self.authority), *headers]
        stream = self.open_stream(block, end_stream=end_stream and not body)
        if body:
            stream.queue(body, end_stream=end_stream)
        return stream

    async def request(self, method: str = "GET", path: str = "/", *, headers: HeaderInput = (),
                      body: bytes = b"", timeout: float | None = None) -> Response:
        """A whole request/response exchange (body consumed, a reset reported, not raised)."""
        stream = self.start_request(method, path, headers=headers, body=body)
        return await self.read_response(stream, timeout)

    async def read_response(self, stream: H2Stream, timeout: float | None = None) -> Response:
        body = b""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            try:
                await stream.wait_response()
                body = await stream.read_all()
            except StreamReset:
                pass
        return Response(stream.status, stream.headers, body, stream.reset_code, stream.trailers)

    def start_websocket(self, path: str = "/", *, subprotocols: Sequence[str] = (),
                        extensions: Sequence[Extension] = (), headers: HeaderInput = (),
                        protocol: str | None = "websocket", version: str | None = "13",
                        method: str = "CONNECT") -> tuple[H2Stream, list[Extension]]:
        """Send the extended CONNECT HEADERS; the parts of it can be left out or changed to
        test the server's validation (protocol=None: a plain CONNECT shape is not produced
        here, use open_stream)."""
        block: list[tuple[bytes | str, bytes | str]] = [(":method", method)]
        if protocol is not None:
            block.append((":protocol", protocol))
        block += [(":scheme", "https" if self.tls else "http"), (":path", path), (":authority", self.authority)]
        if version is not None:
            block.append(("sec-websocket-version", version))
        if subprotocols:
            block.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        offers = []
        for extension in extensions:
            offer = extension.offer()
            if offer:
                offers.append(extension.name if offer is True else f"{extension.name}; {offer}")
        if offers:
            block.append(("sec-websocket-extensions", ", ".join(offers)))
        block += list(headers)
        return self.open_stream(block), list(extensions)

    async def websocket(self, path: str = "/", *, subprotocols: Sequence[str] = (),
                        extensions: Sequence[Extension] = (), headers: HeaderInput = (),
                        protocol: str | None = "websocket", version: str | None = "13",
                        auto_pong: bool = False, require_setting: bool = True,
                        timeout: float | None = None) -> H2WebSocket:
        """Open a WebSocket: extended CONNECT, then wait for the response HEADERS.

        Returns the H2WebSocket whatever the status (check `.status`; a denial's body is read
        with `.stream.read_all()`). As RFC 8441 §3 requires, waits for the server's SETTINGS
        and refuses to go on unless they enable the extended CONNECT (require_setting)."""
        await self.wait_settings(timeout)
        if require_setting and self.h2.remote_settings.enable_connect_protocol != 1:
            await self.ping(timeout)  # the setting may come in a later SETTINGS frame of the preface
        if require_setting and self.h2.remote_settings.enable_connect_protocol != 1:
            raise AssertionError("the server's SETTINGS do not enable extended CONNECT (RFC 8441)")
        stream, offered = self.start_websocket(path, subprotocols=subprotocols, extensions=extensions,
                                               headers=headers, protocol=protocol, version=version)
        return await self.websocket_response(stream, offered, auto_pong=auto_pong, timeout=timeout)

    async def websocket_response(self, stream: H2Stream, offered: Sequence[Extension] = (), *,
                                 auto_pong: bool = False, timeout: float | None = None) -> H2WebSocket:
        """The second half of `websocket()`, for a stream from `start_websocket()`: wait for the
        response HEADERS and apply what it agreed (tests that act while the app decides)."""
        await stream.wait_response(timeout)
        accepted: list[Extension] = []
        subprotocol = None
        if stream.status is not None and 200 <= stream.status < 300:
            value = stream.header(b"sec-websocket-protocol")
            subprotocol = value.decode() if value is not None else None
            agreed = stream.header(b"sec-websocket-extensions")
            if agreed:
                for item in agreed.decode().split(","):
                    name = item.split(";", 1)[0].strip()
                    for extension in offered:
                        if extension.name == name and extension not in accepted:
                            extension.finalize(item.strip())
                            accepted.append(extension)
        return H2WebSocket(stream, subprotocol=subprotocol, extensions=accepted, auto_pong=auto_pong)


__all__ = ["Close", "ConnectionLost", "H2Stream", "H2WSConnection", "H2WebSocket", "PerMessageDeflate",
           "Response", "StreamEnded", "StreamReset"]
