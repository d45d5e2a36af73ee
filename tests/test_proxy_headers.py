"""Forwarding headers (X-Forwarded-For/-Proto/-Host, RFC 7239 Forwarded): believed only from a
trusted peer, applied to the scope's client, scheme and server over HTTP/1.1, HTTP/2 and both
WebSocket carriers, and to the access log; malformed values change nothing and break nothing.

The first half drives the socket-free parser (edge/forwarded.py) through a table; the second
sends the headers to a real server over raw sockets, h2 and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from conftest import connect
from edgeapp import app, capture
from h2client import H2Client
from h2wsclient import H2WSConnection
from rawhttp import Reader

from plexicorn import Config
from plexicorn.cli import parse_config
from plexicorn.config import ConfigError
from plexicorn.edge import forwarded as forwarded_module
from plexicorn.edge.forwarded import MAX_HOPS, Forwarded, parse_forwarded, parse_node, resolve
from plexicorn.edge.trust import TrustedPeers

TRUSTED = TrustedPeers("127.0.0.1,::1,unix,10.0.0.0/8,fd00::/8")


def said(*headers: tuple[str, str], host: bool = False, trusted: TrustedPeers = TRUSTED) -> Forwarded | None:
    return resolve([(name.encode(), value.encode()) for name, value in headers], trusted, host)


# -- the parser, socket-free -------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "client", "secure"), [
    ([("x-forwarded-for", "203.0.113.7")], ("203.0.113.7", 0), None),
    # The client's own entries (left) prove nothing; trusted proxies (right) are skipped.
    ([("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2, 10.0.0.3")], ("203.0.113.7", 0), None),
    ([("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.7, 10.0.0.2")], ("203.0.113.7", 0), None),
    ([("x-forwarded-for", "10.0.0.1, 10.0.0.2")], ("10.0.0.1", 0), None),  # all trusted: the leftmost
    ([("x-forwarded-for", "203.0.113.7:4711")], ("203.0.113.7", 4711), None),
    ([("x-forwarded-for", "2001:db8::1")], ("2001:db8::1", 0), None),
    ([("x-forwarded-for", "[2001:db8::1]:4711")], ("2001:db8::1", 4711), None),
    ([("x-forwarded-for", "2001:DB8:0::1")], ("2001:db8::1", 0), None),
    ([("x-forwarded-for", "::ffff:203.0.113.7")], ("203.0.113.7", 0), None),
    ([("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")], ("203.0.113.7", 0), True),
    ([("x-forwarded-proto", "HTTPS")], None, True),
    ([("x-forwarded-proto", "wss")], None, True),
    ([("x-forwarded-proto", "http")], None, False),
    ([("x-forwarded-proto", "https, http")], None, False),  # the nearest hop's word
    ([("forwarded", "for=203.0.113.7")], ("203.0.113.7", 0), None),
    ([("forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https')], ("2001:db8:cafe::17", 4711), True),
    ([("forwarded", "For=203.0.113.7;Proto=HTTPS;by=10.0.0.1")], ("203.0.113.7", 0), True),
    ([("forwarded", "for=198.51.100.1;proto=http, for=203.0.113.7;proto=https, for=10.0.0.5;proto=http")],
     ("203.0.113.7", 0), True),
    ([("forwarded", "for=203.0.113.7"), ("forwarded", "for=10.0.0.5")], ("203.0.113.7", 0), None),
    ([("forwarded", 'for="203.0.113.7:8080"')], ("203.0.113.7", 8080), None),
    # A client's own Forwarded passed through by a proxy that sets X-Forwarded-For loses.
    ([("forwarded", "for=6.6.6.6;proto=https"), ("x-forwarded-for", "203.0.113.7")], ("203.0.113.7", 0), None),
], ids=lambda value: value if isinstance(value, str) else None)
def test_trusted_forwarding_headers_say_who_the_client_is(headers: Any, client: Any, secure: Any) -> None:
    result = said(*headers)
    assert result is not None
    assert (result.client, result.secure, result.host) == (client, secure, None)


@pytest.mark.parametrize("headers", [
    [("x-forwarded-for", "not-an-address")],
    [("x-forwarded-for", "203.0.113.7:70000")],  # port out of range
    [("x-forwarded-for", "203.0.113.7:")],
    [("x-forwarded-for", "[2001:db8::1")],
    [("x-forwarded-for", "fe80::1%eth0")],
    [("x-forwarded-for", "unknown")],
    [("x-forwarded-for", "")],
    [("x-forwarded-for", "\xff\x00garbage")],
    [("x-forwarded-for", "203.0.113.7, garbage")],  # the nearest untrusted entry is garbage
    [("x-forwarded-for", ", ".join(["10.0.0.1"] * (MAX_HOPS + 18)))],  # 50 trusted hops
    [("x-forwarded-proto", "ftp")],
    [("forwarded", "for=unknown")],
    [("forwarded", 'for="_hidden"')],
    [("forwarded", "for=garbage;proto=gopher")],
    [("forwarded", 'for="203.0.113.7')],  # unterminated quote
    [("forwarded", "for=203.0.113.7,")],
    [("forwarded", "for")],
    [("forwarded", ";;;,,,")],
    [("forwarded", 'for="[2001:db8::1]:99999"')],
    [("forwarded", ", ".join(["for=10.0.0.1"] * 50))],
])
def test_malformed_forwarding_values_change_nothing(headers: Any) -> None:
    result = said(*headers)
    assert result is None or (result.client, result.secure, result.host) == (None, None, None)


def test_fifty_hops_with_a_client_near_the_right_still_find_it() -> None:
    hops = ["198.51.100.1"] * 50 + ["203.0.113.7", "10.0.0.1"]
    result = said(("x-forwarded-for", ", ".join(hops)))
    assert result is not None and result.client == ("203.0.113.7", 0)


@pytest.mark.parametrize(("headers", "host"), [
    ([("x-forwarded-host", "example.com")], ("example.com", None)),
    ([("x-forwarded-host", "Example.COM:8443")], ("example.com", 8443)),
    ([("x-forwarded-host", "evil.example, example.com")], ("example.com", None)),
    ([("x-forwarded-host", "[2001:db8::1]:8443")], ("[2001:db8::1]", 8443)),
    ([("x-forwarded-host", "example.com:99999")], None),
    ([("x-forwarded-host", "exa mple.com")], None),
    ([("forwarded", 'for=203.0.113.7;host="example.com:8443"')], ("example.com", 8443)),
])
def test_forwarded_host_is_taken_only_with_the_flag(headers: Any, host: Any) -> None:
    with_flag = said(*headers, host=True)
    assert with_flag is not None and with_flag.host == host
    without = said(*headers, host=False)
    assert without is None or without.host is None


def test_forwarded_elements_keep_quoted_commas_and_escapes_inside_their_values() -> None:
    assert parse_forwarded('for="a,b";x="q\\"uote", for=c') == [{"for": "a,b", "x": 'q"uote'}, {"for": "c"}]
    assert parse_node("[::1]:0") == ("::1", 0)


def test_untrusted_addresses_in_the_list_stop_the_walk_at_the_nearest_one() -> None:
    only_loopback = TrustedPeers("127.0.0.1")
    result = said(("x-forwarded-for", "203.0.113.7, 10.0.0.2"), trusted=only_loopback)
    assert result is not None and result.client == ("10.0.0.2", 0)
    anyone = TrustedPeers("*")
    result = said(("x-forwarded-for", "203.0.113.7, 10.0.0.2"), trusted=anyone)
    assert result is not None and result.client == ("203.0.113.7", 0)


# -- settings ----------------------------------------------------------------------------------
def test_forwarded_allow_ips_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config().forwarded_allow_ips == "127.0.0.1,::1,unix"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.1.0.0/16")
    assert Config().forwarded_allow_ips == "10.1.0.0/16"
    _, config = parse_config(["main:app", "--forwarded-allow-ips", "*"])  # the flag wins
    assert config.forwarded_allow_ips == "*"


@pytest.mark.parametrize("value", ["10.0.0.0/33", "example.com", "127.0.0.1,,nonsense", "::1/200"])
def test_a_bad_forwarded_allow_ips_is_one_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config(forwarded_allow_ips=value)
    assert str(error.value).startswith("--forwarded-allow-ips: ") and "\n" not in str(error.value)


def test_trust_list_entries() -> None:
    trusted = TrustedPeers("192.168.0.0/16, 2001:db8::/32, 127.0.0.1")
    assert "192.168.4.5" in trusted and "2001:db8:1::5" in trusted and "127.0.0.1" in trusted
    assert "::ffff:192.168.4.5" in trusted  # from a dual-stack socket
    assert "127.0.0.2" not in trusted and "2001:db9::1" not in trusted and None not in trusted
    assert "garbage" not in trusted
    assert None in TrustedPeers("unix") and "203.0.113.7" in TrustedPeers("*")


# -- a real server -----------------------------------------------------------------------------
def get(sock: socket.socket, *headers: bytes, path: bytes = b"/") -> dict[str, Any]:
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: app.test\r\n" + b"".join(h + b"\r\n" for h in headers)
                 + b"\r\n")
    response = Reader(sock).response()
    assert response.status == 200, response
    return json.loads(response.body)


def test_http1_trusted_peer_sets_client_and_scheme_and_the_access_log(serve: Any, caplog: Any, monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    running = serve(app, access_log=True)
    with connect(running) as sock:
        seen = get(sock, b"X-Forwarded-For: 198.51.100.1, 203.0.113.7", b"X-Forwarded-Proto: https",
                   path=b"/first")
        assert seen["client"] == ["203.0.113.7", 0] and seen["scheme"] == "https"
        assert seen["headers"]["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"  # passed on untouched
        # Per request: the next one on the same connection says something else.
        seen = get(sock, b'Forwarded: for="[2001:db8::7]:4711";proto=http', path=b"/second")
        assert seen["client"] == ["2001:db8::7", 4711] and seen["scheme"] == "http"
        plain = get(sock, path=b"/third")
        assert plain["client"][0] == "127.0.0.1" and plain["client"][1] != 0 and plain["scheme"] == "http"
        assert plain["proxy_protocol"] is None
    assert access.wait_for('"GET /first').startswith("203.0.113.7:0 ")
    assert access.wait_for('"GET /second').startswith("2001:db8::7:4711 ")
    assert access.wait_for('"GET /third').startswith("127.0.0.1:")


def test_untrusted_peer_headers_reach_the_app_untouched_and_change_nothing(serve: Any) -> None:
    running = serve(app, forwarded_allow_ips="10.0.0.0/8")  # the test client (127.0.0.1) is not in it
    with connect(running) as sock:
        seen = get(sock, b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https",
                   b"Forwarded: for=198.51.100.1;proto=https")
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"
    assert seen["headers"]["x-forwarded-for"] == "203.0.113.7"
    assert seen["headers"]["forwarded"] == "for=198.51.100.1;proto=https"


def test_no_proxy_headers_ignores_them_from_anyone(serve: Any) -> None:
    running = serve(app, proxy_headers=False, forwarded_allow_ips="*")
    with connect(running) as sock:
        seen = get(sock, b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https")
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"


def test_forwarded_host_sets_the_scope_server_only_with_the_flag(serve: Any) -> None:
    plain = serve(app)
    flagged = serve(app, forwarded_host=True)
    headers = (b"X-Forwarded-Host: www.example.com", b"X-Forwarded-Proto: https")
    with connect(plain) as sock:
        assert get(sock, *headers)["server"] == ["127.0.0.1", plain.port]
    with connect(flagged) as sock:
        assert get(sock, *headers)["server"] == ["www.example.com", 443]
        assert get(sock, b"Forwarded: host=api.example.com:8080")["server"] == ["api.example.com", 8080]


@pytest.mark.parametrize("header", [
    b"X-Forwarded-For: " + b"garbage," * 2000,
    b"X-Forwarded-For: " + b", ".join([b"127.0.0.1"] * 50),
    b"X-Forwarded-For: 203.0.113.7:99999",
    b"Forwarded: for=\"[::1",
    b"Forwarded: for=" + b"\xff" * 100,
    b"X-Forwarded-Proto: " + b"x" * 4000,
], ids=["garbage-list", "50-hops", "port-range", "open-bracket", "non-ascii", "long-proto"])
def test_malformed_values_from_a_trusted_peer_are_ignored_never_a_500(serve: Any, header: bytes) -> None:
    running = serve(app)
    with connect(running) as sock:
        seen = get(sock, header)
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"


def test_http2_streams_get_the_forwarded_client_and_scheme(serve: Any) -> None:
    running = serve(app)
    with H2Client(running.port) as client:
        forwarded = client.request(headers=[(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")])
        plain = client.request()
        seen = json.loads(client.response(forwarded)["body"])
        assert seen["http_version"] == "2" and seen["client"] == ["203.0.113.7", 0] and seen["scheme"] == "https"
        assert json.loads(client.response(plain)["body"])["client"][0] == "127.0.0.1"


def test_websockets_over_http1_and_http2_get_the_forwarded_client_and_wss(serve: Any) -> None:
    running = serve(app)

    async def both() -> tuple[dict, dict]:
        async with ws_connect(f"ws://127.0.0.1:{running.port}/ws", additional_headers={
                "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}) as websocket:
            over_http1 = json.loads(await asyncio.wait_for(websocket.recv(), 5))
        async with await H2WSConnection.open(running.port) as connection:
            websocket2 = await connection.websocket("/ws", headers=[("forwarded", 'for="[2001:db8::9]";proto=https')])
            assert websocket2.status == 200
            over_http2 = json.loads(await websocket2.receive_text())
        return over_http1, over_http2

    over_http1, over_http2 = asyncio.run(both())
    assert over_http1["type"] == "websocket" and over_http1["http_version"] == "1.1"
    assert over_http1["client"] == ["203.0.113.7", 0] and over_http1["scheme"] == "wss"
    assert over_http2["type"] == "websocket" and over_http2["http_version"] == "2"
    assert over_http2["client"] == ["2001:db8::9", 0] and over_http2["scheme"] == "wss"


def test_unix_socket_peers_are_trusted_by_default_and_logged_as_unix(serve: Any, tmp_path: Any, caplog: Any,
                                                                    monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    path = str(tmp_path / "app.sock")
    running = serve(app, bind=(f"unix:{path}",), access_log=True)
    strict = str(tmp_path / "strict.sock")
    serve(app, bind=(f"unix:{strict}",), forwarded_allow_ips="127.0.0.1")

    def over_unix(where: str, *headers: bytes, request: bytes) -> dict:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(where)
            return get(sock, *headers, path=request)

    direct = over_unix(path, request=b"/direct")
    assert direct["client"] is None and direct["server"] == [path, None]
    assert access.wait_for('"GET /direct').startswith("unix - ")
    forwarded = over_unix(path, b"X-Forwarded-For: 203.0.113.7", request=b"/forwarded")
    assert forwarded["client"] == ["203.0.113.7", 0]
    assert access.wait_for('"GET /forwarded').startswith("203.0.113.7:0 ")
    assert running.server.addresses
    # A trust list without `unix` does not believe a Unix-socket peer.
    assert over_unix(strict, b"X-Forwarded-For: 203.0.113.7", request=b"/strict")["client"] is None


def test_parse_caches_hold_only_short_values() -> None:
    # Long values are refused (no address or host is that long) or parsed without being kept, so
    # distinct large headers cannot fill memory through the caches.
    assert parse_node("1" * 10_000) is None
    result = said(("x-forwarded-host", "a" * 10_000), host=True)
    assert result is not None and result.host is None
    long_value = "for=203.0.113.7;x=" + "a" * 5000
    before = forwarded_module._parse_forwarded_cached.cache_info().currsize
    assert parse_forwarded(long_value) == [{"for": "203.0.113.7", "x": "a" * 5000}]
    assert forwarded_module._parse_forwarded_cached.cache_info().currsize == before
