"""Frame-level HTTP/2 conformance: the case registry and the helpers the cases share.

The cases live in the sibling modules, one per part of the RFCs; importing the package
registers them all.

Each case names the section it checks (RFC 9113 unless stated: RFC 7541 for HPACK, RFC 9218
for priorities, RFC 7540 where h2spec still checks a rule RFC 9113 dropped) and the exact
outcome the RFC requires. Where the RFC allows more than one outcome (a stream error that may
also be a connection error, §5.4.1), the case accepts exactly those and says so.

Every case opens its own connection, so a failure cannot leak into the next one. The cases
run against both servers, h2c (cleartext, prior knowledge) and TLS (ALPN h2), except where
the transport matters (the invalid preface, TLS parameters).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
)

from ..h2raw import (
    Connection,
    ErrorCode,
    headers,
    literal_without_indexing,
)
from ..runner import CaseFailed

E = ErrorCode
MAX_WINDOW = 2**31 - 1
# Room for a loaded CI machine, yet below the servers' 5 s keep-alive timeout: a case that passes
# when the server closes the connection must not be passed by the idle timer instead.
TIMEOUT = 4.0


@dataclass(frozen=True)
class Target:
    name: str  # "h2c" or "tls"
    port: int
    ssl_context: ssl.SSLContext | None

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def connect(self) -> Connection:
        return Connection(self.port, self.ssl_context, timeout=TIMEOUT)

    def open(self, client_settings: dict[int, int] | None = None) -> Connection:
        """A connection past the preface: SETTINGS exchanged and acknowledged both ways."""
        conn = self.connect()
        try:
            conn.handshake(client_settings)
        except BaseException:
            conn.close()
            raise
        return conn


@dataclass(frozen=True)
class Case:
    section: str  # e.g. "RFC 9113 §6.5.2"
    title: str
    expected: str
    run: Callable[[Target], None]
    transports: tuple[str, ...] = ("h2c", "tls")

    @property
    def name(self) -> str:
        return f"{self.section} {self.title} -> {self.expected}"


CASES: list[Case] = []


def case(section: str, title: str, expected: str, *, rfc: str = "9113",
         transports: tuple[str, ...] = ("h2c", "tls")) -> Callable[[Callable[[Target], None]], Callable[[Target], None]]:
    def register(function: Callable[[Target], None]) -> Callable[[Target], None]:
        CASES.append(Case(f"RFC {rfc} §{section}", title, expected, function, transports))
        return function
    return register


# -- helpers ----------------------------------------------------------------------------------------

def request_fields(conn: Connection, method: bytes = b"GET", path: bytes = b"/") -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"https" if conn.tls else b"http"),
            (b":authority", conn.authority), (b":path", path)]


def raw_block(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Literal fields without indexing: any bytes at all, and the dynamic tables stay untouched
    (so the hpack.Encoder of the connection stays in step with the server's decoder)."""
    return b"".join(literal_without_indexing(name, value) for name, value in fields)


def malformed(conn: Connection, fields: list[tuple[bytes, bytes]], *, end_stream: bool = True) -> None:
    """Send `fields` as the request on stream 1; expect only that stream to be reset."""
    conn.send(headers(1, raw_block(fields), end_stream=end_stream))
    conn.expect_stream_error(1, E.PROTOCOL_ERROR)


def expect_ok(conn: Connection, stream_id: int, body: bytes | None = None) -> None:
    response = conn.read_response(stream_id)
    if response.status != 200:
        raise CaseFailed(f"200 on stream {stream_id}", f"status {response.status}")
    if body is not None and bytes(response.body) != body:
        raise CaseFailed(f"body {body[:40]!r} ({len(body)} bytes)",
                         f"{bytes(response.body[:40])!r} ({len(response.body)} bytes)")


def data_on(conn: Connection, stream_id: int, mark: int = 0) -> int:
    return sum(len(f.data) for f in conn.frames[mark:] if isinstance(f, DataFrame) and f.stream_id == stream_id)


def exactly_this_much_data(conn: Connection, stream_id: int, amount: int, why: str, mark: int = 0) -> None:
    """Wait for `amount` DATA octets on the stream (the app produces them at its own pace), then
    probe with PINGs: more than `amount` by then means the server overran a window."""
    conn.read_until(lambda f: f is not None and data_on(conn, stream_id, mark) >= amount,
                    f"{amount} octets of DATA on stream {stream_id} ({why})")
    conn.expect_alive()
    got = data_on(conn, stream_id, mark)
    if got != amount:
        raise CaseFailed(f"exactly {amount} octets of DATA ({why})", f"{got} octets")


def no_data_after_headers(conn: Connection, stream_id: int, why: str) -> None:
    """The response HEADERS arrive, and no DATA within two PING round trips after them."""
    conn.read_until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream_id,
                    f"response HEADERS on stream {stream_id}")
    conn.expect_alive()
    if data_on(conn, stream_id):
        raise CaseFailed(f"no DATA ({why})", f"{data_on(conn, stream_id)} octets")


def connection_error(t: Target, frame: bytes, code: int) -> None:
    with t.open() as conn:
        conn.send(frame)
        conn.expect_connection_error(code)


def plain_request(conn: Connection, path: bytes) -> bytes:
    """A request block that leaves the dynamic table alone (see raw_block)."""
    return raw_block(request_fields(conn, path=path))


def seen_header(conn: Connection, stream_id: int, name: str) -> list[str]:
    response = conn.read_response(stream_id)
    if response.status != 200:
        raise CaseFailed(f"200 on stream {stream_id}", f"status {response.status}")
    return [value for key, value in json.loads(bytes(response.body)) if key == name]
