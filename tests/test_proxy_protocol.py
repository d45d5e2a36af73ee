"""The PROXY protocol (--proxy-protocol): v1 and v2 headers over TCP4, TCP6 and UNIX set the
scope's client and server, before TLS on a TLS listener; a missing, malformed, late or untrusted
header closes the connection with a debug line and a count, and nothing else.

The parser (edge/proxyprotocol.py) is driven byte by byte through a table first; then a real
server gets headers from raw sockets, an h2 client over TLS and a Unix-socket client."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shutil
import socket
import struct
import subprocess
import time
from typing import Any, Callable, Coroutine

import pytest

from conftest import connect
from edgeapp import app, capture
from fakes import FakeTransport, ManualTimers
from h2client import H2Client
from rawhttp import Reader

from plexicorn import Config
from plexicorn.edge.proxyprotocol import ProxyHeader, ProxyHeaderError, parse
from plexicorn.runtime.context import ServerContext
from plexicorn.runtime.listener import SHUTDOWN_GRACE, ProxyHeaderReader

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PROXY, LOCAL = 0x21, 0x20
TCP4, TCP6, UNIX, UNSPEC = 0x11, 0x21, 0x31, 0x00


def v2(command: int = PROXY, family: int = TCP4, addresses: bytes = b"", tlvs: bytes = b"",
       length: int | None = None) -> bytes:
    """A v2 header, built here from the specification's layout (not by the code under test)."""
    body = addresses + tlvs
    return SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body) if length is None else length) + body


def inet(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    kind = socket.AF_INET6 if ":" in source else socket.AF_INET
    return (socket.inet_pton(kind, source) + socket.inet_pton(kind, destination)
            + struct.pack("!HH", source_port, destination_port))


def unix(source: str, destination: str) -> bytes:
    return source.encode().ljust(108, b"\0") + destination.encode().ljust(108, b"\0")


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


SSL_TLV = tlv(0x20, b"\x07" + b"\0\0\0\0" + tlv(0x21, b"TLSv1.3"))  # PP2_TYPE_SSL: client SSL + cert bits


# -- the parser, socket-free -------------------------------------------------------------------
@pytest.mark.parametrize(("data", "expected"), [
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
     ProxyHeader(1, False, ("192.0.2.1", 56324), ("198.51.100.2", 443))),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
     ProxyHeader(1, False, ("2001:db8::1", 65535), ("2001:db8::2", 0))),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, True)),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, True)),
    (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 56324, 443)),
     ProxyHeader(2, False, ("192.0.2.1", 56324), ("198.51.100.2", 443))),
    (v2(family=TCP6, addresses=inet("2001:db8::1", "2001:db8::2", 1, 8443)),
     ProxyHeader(2, False, ("2001:db8::1", 1), ("2001:db8::2", 8443))),
    (v2(family=UNIX, addresses=unix("/tmp/client.sock", "/run/haproxy.sock")),
     ProxyHeader(2, False, None, ("/run/haproxy.sock", None))),
    (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2), tlvs=SSL_TLV + tlv(0x04, b"")),
     ProxyHeader(2, False, ("192.0.2.1", 1), ("198.51.100.2", 2), ssl=True)),
    (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2), tlvs=tlv(0x05, b"unique-id")),
     ProxyHeader(2, False, ("192.0.2.1", 1), ("198.51.100.2", 2))),
    (v2(command=LOCAL, family=UNSPEC), ProxyHeader(2, True)),
    (v2(command=LOCAL, family=TCP4, addresses=inet("10.0.0.1", "10.0.0.2", 1, 2)), ProxyHeader(2, True)),
    (v2(family=UNSPEC, tlvs=tlv(0x04, b"\0" * 10)), ProxyHeader(2, True)),
], ids=["v1-tcp4", "v1-tcp6", "v1-unknown", "v1-unknown-addresses", "v2-tcp4", "v2-tcp6", "v2-unix",
        "v2-ssl-tlv", "v2-tlv", "v2-local", "v2-local-addresses", "v2-unspec"])
def test_headers_parse_whole_and_byte_by_byte(data: bytes, expected: ProxyHeader) -> None:
    request = b"GET / HTTP/1.1\r\n"
    assert parse(data + request) == (expected, len(data))
    for cut in range(len(data)):  # a header arriving in pieces: more bytes needed, never an error
        assert parse(data[:cut]) is None, cut


@pytest.mark.parametrize(("data", "versions"), [
    (b"GET / HTTP/1.1\r\n", (1, 2)),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", (2,)),
    (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2)), (1,)),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n", (1,)),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 65536\r\n", (1,)),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 056324 443\r\n", (1,)),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n", (1,)),
    (b"PROXY TCP4 2001:db8::1 198.51.100.2 1 443\r\n", (1,)),
    (b"PROXY TCP4 192.0.2.999 198.51.100.2 1 443\r\n", (1,)),
    (b"PROXY TCP5 192.0.2.1 198.51.100.2 1 443\r\n", (1,)),
    (b"PROXY  TCP4 192.0.2.1 198.51.100.2 1 443\r\n", (1,)),
    (b"PROXY TCP4 " + b"1" * 200 + b"\r\n", (1,)),  # no CRLF within 107 bytes
    (b"PROXY TCP4 \xff\xfe 198.51.100.2 1 443\r\n", (1,)),
    (SIGNATURE + b"\x31\x11\x00\x0c" + b"\0" * 12, (2,)),  # version 3
    (SIGNATURE + b"\x22\x11\x00\x0c" + b"\0" * 12, (2,)),  # command 2
    (v2(family=0x12, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2)), (2,)),  # datagram
    (v2(family=0x41, addresses=b"\0" * 12), (2,)),  # family 4
    (v2(family=TCP6, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2)), (2,)),  # too short for TCP6
    (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2), tlvs=b"\x04\x00"), (2,)),  # TLV cut
    (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1, 2), tlvs=b"\x04\x00\x09ab"), (2,)),  # overrun
    (b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00", (2,)),
], ids=["http", "v1-not-allowed", "v2-not-allowed", "v1-fields", "v1-port-range", "v1-leading-zero",
        "v1-negative", "v1-family-mismatch", "v1-bad-ipv4", "v1-protocol", "v1-double-space", "v1-too-long",
        "v1-binary", "v2-version", "v2-command", "v2-datagram", "v2-family", "v2-short", "v2-tlv-cut",
        "v2-tlv-overrun", "v2-signature"])
def test_malformed_or_unexpected_headers_raise_with_a_reason(data: bytes, versions: tuple[int, ...]) -> None:
    with pytest.raises(ProxyHeaderError) as error:
        parse(data, versions)
    assert str(error.value) and "\n" not in str(error.value)


# -- a real server -----------------------------------------------------------------------------
def request(sock: socket.socket, preamble: bytes, path: bytes = b"/") -> dict[str, Any]:
    sock.sendall(preamble + b"GET " + path + b" HTTP/1.1\r\nHost: app.test\r\n\r\n")
    response = Reader(sock).response()
    assert response.status == 200
    return json.loads(response.body)


def closed_without_a_word(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("mode", ["v1", "v2", "any"])
def test_tcp4_and_tcp6_headers_become_client_and_server(serve: Any, mode: str, caplog: Any, monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    running = serve(app, proxy_protocol=mode, access_log=True)
    if mode == "v1":
        headers = [b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 8443\r\n"]
    else:
        headers = [v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 56324, 443)),
                   v2(family=TCP6, addresses=inet("2001:db8::1", "2001:db8::2", 4711, 8443), tlvs=SSL_TLV)]
    for index, header in enumerate(headers):
        with connect(running) as sock:
            seen = request(sock, header, b"/%d" % index)
            # Every request of the connection has the header's addresses.
            assert request(sock, b"", b"/again") == seen
        assert seen["client"] == (["192.0.2.1", 56324] if index == 0 else ["2001:db8::1", 4711])
        assert seen["server"] == (["198.51.100.2", 443] if index == 0 else ["2001:db8::2", 8443])
        assert seen["scheme"] == "http"
        # The extension says which version and (v2's PP2_TYPE_SSL) whether the client spoke TLS.
        assert seen["proxy_protocol"] == {"version": 1 if mode == "v1" else 2, "ssl": mode != "v1" and index == 1}
    assert access.wait_for('"GET /0 ').startswith("192.0.2.1:56324 ")
    assert access.wait_for('"GET /1 ').startswith("2001:db8::1:4711 ")
    assert running.server.counters.proxy_header_rejects == 0


def test_header_trickling_in_byte_by_byte_then_the_request(serve: Any) -> None:
    running = serve(app, proxy_protocol="any")
    header = v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1234, 80), tlvs=tlv(0x05, b"id" * 50))
    with connect(running) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in header:
            sock.sendall(bytes([byte]))
        assert request(sock, b"")["client"] == ["192.0.2.1", 1234]


def test_local_and_unknown_keep_the_connection_addresses(serve: Any) -> None:
    running = serve(app, proxy_protocol="any")
    for header in (v2(command=LOCAL, family=UNSPEC), b"PROXY UNKNOWN\r\n"):
        with connect(running) as sock:
            seen = request(sock, header)
            assert seen["client"] == list(sock.getsockname()) and seen["server"] == ["127.0.0.1", running.port]


def test_unix_listener_with_a_unix_header(serve: Any, tmp_path: Any, caplog: Any, monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    path = str(tmp_path / "app.sock")
    serve(app, bind=(f"unix:{path}",), proxy_protocol="v2", access_log=True)
    for header, client in ((v2(family=UNIX, addresses=unix("/tmp/c.sock", "/run/front.sock")), None),
                           (v2(family=TCP4, addresses=inet("192.0.2.1", "198.51.100.2", 1, 443)), ["192.0.2.1", 1])):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            seen = request(sock, header, b"/unix" if client is None else b"/tcp")
        assert seen["client"] == client
    assert access.wait_for('"GET /unix ').startswith("unix - ")
    assert access.wait_for('"GET /tcp ').startswith("192.0.2.1:1 ")


def test_a_proxy_header_before_tls_and_h2(serve: Any, client_ssl_context: Any) -> None:
    running = serve(app, tls=True, proxy_protocol="v2")
    header = v2(family=TCP6, addresses=inet("2001:db8::1", "2001:db8::2", 4711, 443), tlvs=SSL_TLV)
    with H2Client(running.port, ssl_context=client_ssl_context(), preamble=header) as client:
        seen = json.loads(client.response(client.request())["body"])
    assert seen["http_version"] == "2" and seen["scheme"] == "https" and seen["ssl"]
    assert seen["client"] == ["2001:db8::1", 4711] and seen["server"] == ["2001:db8::2", 443]


def test_a_proxy_header_naming_a_trusted_proxy_lets_its_forwarding_headers_count(serve: Any) -> None:
    running = serve(app, proxy_protocol="v1", forwarded_allow_ips="127.0.0.1,10.0.0.0/8")
    with connect(running) as sock:  # the relayed peer is 10.0.0.5, a trusted proxy: XFF counts
        sock.sendall(b"PROXY TCP4 10.0.0.5 10.0.0.1 1000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n"
                     b"X-Forwarded-For: 203.0.113.7\r\n\r\n")
        assert json.loads(Reader(sock).response().body)["client"] == ["203.0.113.7", 0]
    with connect(running) as sock:  # the relayed peer is an ordinary client: XFF does not count
        sock.sendall(b"PROXY TCP4 198.51.100.9 10.0.0.1 1000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n"
                     b"X-Forwarded-For: 203.0.113.7\r\n\r\n")
        assert json.loads(Reader(sock).response().body)["client"] == ["198.51.100.9", 1000]


@pytest.mark.parametrize(("mode", "first_bytes"), [
    ("v1", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("v2", b"PROXY TCP4 192.0.2.1 198.51.100.2 1 443\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("any", b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 443\r\n"),
    ("any", b"\x16\x03\x01\x02\x00"),  # a TLS ClientHello where the header should be
    ("v2", SIGNATURE + b"\x21\x11\x00\x0c" + b"\0" * 8 + b"\x00\x01\x00"),  # cut short, then silence
], ids=["missing", "wrong-version", "bad-port", "tls-instead", "cut-short"])
def test_missing_or_malformed_header_closes_with_a_debug_line_and_a_count(
        serve: Any, mode: str, first_bytes: bytes, caplog: Any, monkeypatch: Any) -> None:
    errors = capture(caplog, monkeypatch, "plexicorn.error", logging.DEBUG)
    running = serve(app, proxy_protocol=mode, tls_handshake_timeout=0.5)
    with connect(running) as sock:
        sock.sendall(first_bytes)
        assert closed_without_a_word(sock)
    assert errors.wait_for("PROXY protocol: closed the connection from ")
    deadline = time.monotonic() + 5
    while running.server.counters.proxy_header_rejects != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.WARNING]


def test_untrusted_peer_is_closed_before_it_says_anything(serve: Any, caplog: Any, monkeypatch: Any) -> None:
    errors = capture(caplog, monkeypatch, "plexicorn.error", logging.DEBUG)
    running = serve(app, proxy_protocol="v1", forwarded_allow_ips="10.0.0.0/8")
    with connect(running) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 443\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_without_a_word(sock)
    assert "not in --forwarded-allow-ips" in errors.wait_for("PROXY protocol: closed")
    assert running.server.counters.proxy_header_rejects == 1


def test_silent_connection_is_closed_after_the_handshake_timeout(serve: Any) -> None:
    running = serve(app, proxy_protocol="any", tls_handshake_timeout=0.3)
    with connect(running) as sock:
        started = time.monotonic()
        assert closed_without_a_word(sock)
        assert time.monotonic() - started < 5
    assert running.server.counters.proxy_header_rejects == 1


def test_proxy_protocol_off_answers_a_proxy_line_with_a_400_in_words(serve: Any) -> None:
    running = serve(app)
    with connect(running) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 443\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = Reader(sock).response()
    assert response.status == 400 and b"b'" not in response.body and b"METHOD TARGET" in response.body


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl: apt-get install curl")
def test_curl_haproxy_protocol_before_tls_and_h2(serve: Any, ca_file: str) -> None:
    # curl writes a v1 line with its own addresses; it is the trusted peer here (127.0.0.0/8).
    running = serve(app, tls=True, proxy_protocol="any", forwarded_allow_ips="127.0.0.0/8")
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--haproxy-protocol", "--http2", "--cacert", ca_file,
         "--interface", "127.0.0.2", "--write-out", "\n%{local_port} %{http_version}",
         f"https://localhost:{running.port}/curl"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    body, _, trailer = result.stdout.rpartition("\n")
    local_port, http_version = trailer.split()
    seen = json.loads(body)
    assert http_version == "2" and seen["http_version"] == "2" and seen["scheme"] == "https"
    assert seen["client"] == ["127.0.0.2", int(local_port)]
    assert seen["proxy_protocol"] == {"version": 1, "ssl": False}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl: apt-get install curl")
@pytest.mark.parametrize("how", ["--http2", "--http2-prior-knowledge", "--http1.1"])
def test_curl_haproxy_protocol_in_cleartext_h2c_upgrade_prior_knowledge_and_http1(serve: Any, how: str) -> None:
    # After `Upgrade: h2c` the connection is HTTP/2's: stream 1 keeps the PROXY header's client.
    running = serve(app, proxy_protocol="v1", forwarded_allow_ips="127.0.0.0/8")
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--haproxy-protocol", how, "--interface", "127.0.0.2",
         "--write-out", "\n%{local_port} %{http_version}", f"http://127.0.0.1:{running.port}/h2c"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    body, _, trailer = result.stdout.rpartition("\n")
    local_port, http_version = trailer.split()
    seen = json.loads(body)
    assert seen["http_version"] == http_version == ("1.1" if how == "--http1.1" else "2")
    assert seen["client"] == ["127.0.0.2", int(local_port)] and seen["scheme"] == "http"


# -- the listener's reader, socket-free (fake transport, hand-fired timers) --------------------
class Recorder(asyncio.Protocol):
    """Stands for what comes after the header (the TLS layer or the preface dispatcher)."""

    def __init__(self, header: ProxyHeader) -> None:
        self.header = header
        self.transport: asyncio.BaseTransport | None = None
        self.received = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data


class HandOverTransport(FakeTransport):
    def __init__(self, peer: Any = ("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.peer = peer
        self.protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else super().get_extra_info(name, default)


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run a socket-free test inside an event loop (the Runtime seam takes the running one)."""
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())
    return run


def reader(**config: Any) -> tuple[ProxyHeaderReader, ServerContext, ManualTimers, list[Recorder]]:
    timers = ManualTimers()
    context = ServerContext(app=app, config=Config(access_log=False, **config), runtime=timers)
    made: list[Recorder] = []

    def then(header: ProxyHeader) -> Recorder:
        made.append(Recorder(header))
        return made[-1]
    return ProxyHeaderReader(context, then), context, timers, made


@in_loop
async def test_reader_hands_the_connection_and_the_bytes_after_the_header_over_once() -> None:
    protocol, context, timers, made = reader(proxy_protocol="v1", tls_handshake_timeout=7.0)
    transport = HandOverTransport()
    protocol.connection_made(transport)
    assert protocol in context.connections
    protocol.data_received(b"PROXY TCP4 192.0.2.1 198.51.100.2 1")
    assert made == []
    protocol.data_received(b" 2\r\nGET / HTTP/1.1\r\n")
    assert len(made) == 1 and made[0].header.client == ("192.0.2.1", 1)
    assert transport.protocol is made[0] and made[0].transport is transport
    assert made[0].received == b"GET / HTTP/1.1\r\n"
    assert protocol not in context.connections and not transport.closed
    assert all(timer.cancelled for timer in timers.timers)  # the 7 s deadline is gone
    assert context.counters.proxy_header_rejects == 0


@in_loop
async def test_reader_deadline_and_shutdown_grace_close_without_a_word() -> None:
    protocol, context, timers, made = reader(proxy_protocol="v2", tls_handshake_timeout=7.0)
    transport = HandOverTransport()
    protocol.connection_made(transport)
    protocol.data_received(SIGNATURE[:5])
    timers.fire(7.0)
    assert transport.closed and transport.written == b"" and made == []
    assert context.counters.proxy_header_rejects == 1 and protocol not in context.connections

    protocol, context, timers, made = reader(proxy_protocol="v2", tls_handshake_timeout=7.0)
    transport = HandOverTransport()
    protocol.connection_made(transport)
    protocol.shutdown()  # its header may be on its way: a second, not the whole deadline
    timers.fire(SHUTDOWN_GRACE)
    assert transport.closed and context.counters.proxy_header_rejects == 1


@in_loop
async def test_reader_refuses_an_untrusted_peer_at_once_and_a_unix_peer_by_the_list() -> None:
    protocol, context, _, made = reader(proxy_protocol="any", forwarded_allow_ips="10.0.0.0/8")
    transport = HandOverTransport(("192.0.2.1", 4000))
    protocol.connection_made(transport)
    protocol.data_received(b"PROXY UNKNOWN\r\n")
    assert transport.closed and made == [] and context.counters.proxy_header_rejects == 1
    protocol, context, _, made = reader(proxy_protocol="any")  # default list: unix is trusted
    transport = HandOverTransport("")
    protocol.connection_made(transport)
    protocol.data_received(b"PROXY UNKNOWN\r\n")
    assert not transport.closed and len(made) == 1 and made[0].header.local


def test_after_a_proxy_header_without_the_clients_address_forwarding_headers_are_not_believed():
    """A PROXY header that names no client (LOCAL, UNKNOWN, UNIX) leaves the proxy relaying the
    client's own bytes: an X-Forwarded-For in them is the client's word, so it changes nothing."""
    from fakes import FakeTransport

    from plexicorn.config import Config
    from plexicorn.runtime.context import ServerContext, describe_connection

    async def app(scope, receive, send):
        pass

    async def check():
        context = ServerContext(app=app, config=Config())
        transport = FakeTransport()  # its peer is 127.0.0.1: a trusted proxy by default
        assert describe_connection(transport, context).forwarding is not None
        for header in (ProxyHeader(1, True), ProxyHeader(2, False, client=None, server=None)):
            assert describe_connection(transport, context, header).forwarding is None

    import asyncio
    asyncio.run(check())
