"""ServerTLS: SNI certificates, reload, client certificates, connection info.

Every test completes real TLS handshakes over 127.0.0.1 against the
store's listener context and checks what the client actually received.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from plexicorn.tls import (
    CertificatePair,
    ServerTLS,
    TLSConfigError,
    create_server_context,
    h2_adequate,
)

TIMEOUT = 10.0

# IANA ids, written out here so the test does not trust the module's table.
IANA_IDS = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_AES_128_CCM_SHA256": 0x1304,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
}


# --- helpers -------------------------------------------------------------------


@dataclass
class Handshake:
    info: dict[str, Any]
    adequate: bool


class EchoServer:
    """Serves TLS with `store.context` in threads: reports each handshake, then echoes.

    Sending b"INFO" on a connection makes the server report that
    connection's connection_info() again (computed on its own thread).
    """

    def __init__(self, store: ServerTLS) -> None:
        self.store = store
        self.events: queue.Queue[Handshake | BaseException | dict[str, Any]] = queue.Queue()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # listener closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        try:
            tls = self.store.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.events.put(exc)
            conn.close()
            return
        with tls:
            self.events.put(Handshake(self.store.connection_info(tls), h2_adequate(tls)))
            while True:
                try:
                    data = tls.recv(1024)
                except (ssl.SSLError, OSError):
                    return
                if not data:
                    return
                if data == b"INFO":
                    self.events.put(self.store.connection_info(tls))
                tls.sendall(data)

    def next_event(self) -> Handshake | BaseException | dict[str, Any]:
        return self.events.get(timeout=TIMEOUT)

    def handshake(self) -> Handshake:
        event = self.next_event()
        assert isinstance(event, Handshake), f"server handshake failed: {event!r}"
        return event

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[EchoServer] = []

    def start(store: ServerTLS) -> EchoServer:
        servers.append(EchoServer(store))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client_context(
    ca: trustme.CA,
    *,
    cert: trustme.LeafCert | None = None,
    check_hostname: bool = True,
    max_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.check_hostname = check_hostname
    if cert is not None:
        cert.configure_cert(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def connect(server: EchoServer, ctx: ssl.SSLContext, hostname: str | None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(raw, server_hostname=hostname)
    except BaseException:
        raw.close()
        raise


def echo(tls: ssl.SSLSocket, data: bytes) -> bytes:
    tls.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = tls.recv(len(data) - len(received))
        if not chunk:
            break
        received += chunk
    return received


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def served_der(server: EchoServer, ctx: ssl.SSLContext, hostname: str | None) -> bytes:
    """The leaf certificate a new connection receives; the connection is proven usable."""
    with connect(server, ctx, hostname) as tls:
        assert echo(tls, b"ping") == b"ping"
        peer = tls.getpeercert(binary_form=True)
    handshake = server.handshake()
    assert handshake.info["server_cert"] is not None
    assert ssl.PEM_cert_to_DER_cert(handshake.info["server_cert"]) == peer
    return peer


def assert_refused(server: EchoServer, ctx: ssl.SSLContext, hostname: str | None) -> None:
    # With TLS 1.3 the client may finish its side before the server rejects
    # its certificate, so the refusal can surface on the first read instead.
    data: bytes | None
    try:
        with connect(server, ctx, hostname) as tls:
            tls.sendall(b"ping")
            data = tls.recv(4)
    except (ssl.SSLError, OSError):
        data = None
    assert not data
    assert isinstance(server.next_event(), ssl.SSLError)


def write_atomically(path: Path, data: bytes) -> None:
    # Like certbot or any careful deployer: a new file renamed into place.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_pair(
    directory: Path, stem: str, leaf: trustme.LeafCert, *, combined: bool = False
) -> CertificatePair:
    cert = directory / f"{stem}.pem"
    if combined:
        write_atomically(cert, leaf.private_key_and_cert_chain_pem.bytes())
        return CertificatePair(str(cert))
    key = directory / f"{stem}.key"
    write_atomically(cert, b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    write_atomically(key, leaf.private_key_pem.bytes())
    return CertificatePair(str(cert), str(key))


def one_line_error(excinfo: pytest.ExceptionInfo[TLSConfigError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


# --- SNI -------------------------------------------------------------------------


def test_sni_name_selects_its_certificate_and_anything_else_gets_the_default(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    a, b, default = ca.issue_cert("a.test"), ca.issue_cert("b.test"), ca.issue_cert("localhost")
    store = ServerTLS(
        default=write_pair(tmp_path, "localhost", default),
        by_name={"a.test": write_pair(tmp_path, "a", a), "B.Test": write_pair(tmp_path, "b", b)},
    )
    assert store.names == ["a.test", "b.test"]
    server = serve(store)
    assert served_der(server, client_context(ca), "a.test") == der(a)
    assert served_der(server, client_context(ca), "b.test") == der(b)
    assert served_der(server, client_context(ca), "localhost") == der(default)
    # Names compare case-insensitively.
    assert served_der(server, client_context(ca), "A.TEST") == der(a)
    # No SNI at all (connecting by address), and a name nobody configured.
    assert served_der(server, client_context(ca, check_hostname=False), None) == der(default)
    unknown = client_context(ca, check_hostname=False)
    assert served_der(server, unknown, "unknown.test") == der(default)


def test_wildcard_name_matches_exactly_one_label(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    wild, default = ca.issue_cert("*.wild.test"), ca.issue_cert("localhost")
    store = ServerTLS(
        default=write_pair(tmp_path, "default", default),
        by_name={"*.wild.test": write_pair(tmp_path, "wild", wild)},
    )
    server = serve(store)
    assert served_der(server, client_context(ca), "x.wild.test") == der(wild)
    loose = client_context(ca, check_hostname=False)
    assert served_der(server, loose, "a.b.wild.test") == der(default)
    assert served_der(server, loose, "wild.test") == der(default)


def test_exact_name_wins_over_wildcard(ca: trustme.CA, tmp_path: Path, serve: Any) -> None:
    wild, exact = ca.issue_cert("*.wild.test"), ca.issue_cert("exact.wild.test")
    store = ServerTLS(
        by_name={
            "*.wild.test": write_pair(tmp_path, "wild", wild),
            "exact.wild.test": write_pair(tmp_path, "exact", exact),
        }
    )
    server = serve(store)
    assert served_der(server, client_context(ca), "exact.wild.test") == der(exact)
    assert served_der(server, client_context(ca), "other.wild.test") == der(wild)


def test_sni_dir_serves_flat_files_and_certbot_folders(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    sni = tmp_path / "live"
    sni.mkdir()
    leaves = {name: ca.issue_cert(name) for name in ("a.test", "b.test", "c.test", "*.wild.test")}
    write_pair(sni, "a.test", leaves["a.test"])  # a.test.pem + a.test.key
    write_pair(sni, "c.test", leaves["c.test"], combined=True)  # key inside c.test.pem
    write_pair(sni, "_.wild.test", leaves["*.wild.test"])  # "_." stands for "*."
    certbot = sni / "b.test"
    certbot.mkdir()
    (certbot / "fullchain.pem").write_bytes(leaves["b.test"].cert_chain_pems[0].bytes())
    (certbot / "privkey.pem").write_bytes(leaves["b.test"].private_key_pem.bytes())
    (sni / "README").write_text("This directory contains your keys and certificates.\n")
    (sni / ".editor-swap").write_text("not a certificate")

    store = ServerTLS(sni_dir=str(sni))
    assert store.names == ["*.wild.test", "a.test", "b.test", "c.test"]
    server = serve(store)
    for name in ("a.test", "b.test", "c.test"):
        assert served_der(server, client_context(ca), name) == der(leaves[name])
    assert served_der(server, client_context(ca), "x.wild.test") == der(leaves["*.wild.test"])
    # Without a default, the first name (sorted) serves clients without SNI.
    no_sni = client_context(ca, check_hostname=False)
    assert served_der(server, no_sni, None) == der(leaves["*.wild.test"])


def test_sni_dir_change_is_noticed_and_reload_serves_the_new_name(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    sni = tmp_path / "sni"
    sni.mkdir()
    a, d = ca.issue_cert("a.test"), ca.issue_cert("d.test")
    write_pair(sni, "a.test", a)
    store = ServerTLS(sni_dir=str(sni))
    server = serve(store)
    assert not store.files_changed()
    write_pair(sni, "d.test", d)
    assert store.files_changed()
    store.reload()
    assert store.names == ["a.test", "d.test"]
    assert served_der(server, client_context(ca), "d.test") == der(d)


# --- reload ----------------------------------------------------------------------


def test_reload_gives_new_handshakes_the_new_certificate_and_keeps_old_connections(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    old, new = ca.issue_cert("a.test"), ca.issue_cert("a.test")
    assert der(old) != der(new)  # distinct serials
    store = ServerTLS(by_name={"a.test": write_pair(tmp_path, "a", old)})
    server = serve(store)
    assert not store.files_changed()

    established = connect(server, client_context(ca), "a.test")
    with established:
        assert server.handshake().info["server_cert"] is not None
        assert established.getpeercert(binary_form=True) == der(old)

        write_pair(tmp_path, "a", new)
        assert store.files_changed()
        store.reload()
        assert not store.files_changed()
        assert served_der(server, client_context(ca), "a.test") == der(new)

        # The connection from before the reload still carries data, and
        # still reports the certificate it was actually served.
        assert echo(established, b"INFO") == b"INFO"
        info = server.next_event()
        assert isinstance(info, dict)
        assert ssl.PEM_cert_to_DER_cert(info["server_cert"]) == der(old)


def test_broken_reload_raises_and_keeps_serving_the_old_certificate(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    old, new = ca.issue_cert("a.test"), ca.issue_cert("a.test")
    pair = write_pair(tmp_path, "a", old)
    store = ServerTLS(by_name={"a.test": pair})
    server = serve(store)

    write_atomically(Path(pair.certfile), b"this is not a certificate\n")
    assert store.files_changed()
    with pytest.raises(TLSConfigError) as excinfo:
        store.reload()
    assert pair.certfile in one_line_error(excinfo)
    assert served_der(server, client_context(ca), "a.test") == der(old)
    # The failed attempt counts as seen: no retry until the file changes again.
    assert not store.files_changed()

    write_pair(tmp_path, "a", new)
    assert store.files_changed()
    store.reload()
    assert served_der(server, client_context(ca), "a.test") == der(new)


# --- client certificates ---------------------------------------------------------


@pytest.fixture
def clients_ca(tmp_path: Path) -> tuple[trustme.CA, str]:
    clients = trustme.CA()
    path = tmp_path / "clients-ca.pem"
    clients.cert_pem.write_to_path(str(path))
    return clients, str(path)


def test_required_client_certificate(
    ca: trustme.CA, clients_ca: tuple[trustme.CA, str], tmp_path: Path, serve: Any
) -> None:
    clients, ca_file = clients_ca
    store = ServerTLS(
        default=write_pair(tmp_path, "localhost", ca.issue_cert("localhost")),
        client_cert="required",
        ca_certs=ca_file,
    )
    server = serve(store)
    assert_refused(server, client_context(ca), "localhost")

    alice = clients.issue_cert(
        "alice@example.test", common_name="alice", organization_name="Example Org",
        organization_unit_name="QA",
    )
    with connect(server, client_context(ca, cert=alice), "localhost") as tls:
        assert echo(tls, b"ping") == b"ping"
    info = server.handshake().info
    assert [ssl.PEM_cert_to_DER_cert(pem) for pem in info["client_cert_chain"][:1]] == [der(alice)]
    assert info["client_cert_name"] == "CN=alice,OU=QA,O=Example Org"
    assert info["client_cert_error"] is None

    stranger = trustme.CA().issue_cert("mallory@example.test")
    assert_refused(server, client_context(ca, cert=stranger), "localhost")


def test_optional_client_certificate(
    ca: trustme.CA, clients_ca: tuple[trustme.CA, str], tmp_path: Path, serve: Any
) -> None:
    clients, ca_file = clients_ca
    store = ServerTLS(
        default=write_pair(tmp_path, "localhost", ca.issue_cert("localhost")),
        client_cert="optional",
        ca_certs=ca_file,
    )
    server = serve(store)
    with connect(server, client_context(ca), "localhost") as tls:
        assert echo(tls, b"ping") == b"ping"
    info = server.handshake().info
    assert info["client_cert_chain"] == [] and info["client_cert_name"] is None

    bob = clients.issue_cert("bob@example.test", common_name="bob")
    with connect(server, client_context(ca, cert=bob), "localhost") as tls:
        assert echo(tls, b"ping") == b"ping"
    info = server.handshake().info
    assert ssl.PEM_cert_to_DER_cert(info["client_cert_chain"][0]) == der(bob)

    stranger = trustme.CA().issue_cert("mallory@example.test")
    assert_refused(server, client_context(ca, cert=stranger), "localhost")


def test_client_certificate_still_required_after_sni_switch(
    ca: trustme.CA, clients_ca: tuple[trustme.CA, str], tmp_path: Path, serve: Any
) -> None:
    clients, ca_file = clients_ca
    b = ca.issue_cert("b.test")
    store = ServerTLS(
        by_name={
            "a.test": write_pair(tmp_path, "a", ca.issue_cert("a.test")),
            "b.test": write_pair(tmp_path, "b", b),
        },
        client_cert="required",
        ca_certs=ca_file,
    )
    server = serve(store)  # listener context is a.test's: b.test means a switch
    alice = clients.issue_cert("alice@example.test", common_name="alice")
    with connect(server, client_context(ca, cert=alice), "b.test") as tls:
        assert echo(tls, b"ping") == b"ping"
        assert tls.getpeercert(binary_form=True) == der(b)
    info = server.handshake().info
    assert ssl.PEM_cert_to_DER_cert(info["client_cert_chain"][0]) == der(alice)
    assert ssl.PEM_cert_to_DER_cert(info["server_cert"]) == der(b)
    assert_refused(server, client_context(ca), "b.test")
    stranger = trustme.CA().issue_cert("mallory@example.test")
    assert_refused(server, client_context(ca, cert=stranger), "b.test")


# --- connection info, versions, ciphers -------------------------------------------


def test_connection_info_reports_version_cipher_and_served_certificate(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    a = ca.issue_cert("a.test")
    store = ServerTLS(
        default=write_pair(tmp_path, "default", ca.issue_cert("localhost")),
        by_name={"a.test": write_pair(tmp_path, "a", a)},
    )
    server = serve(store)

    with connect(server, client_context(ca), "a.test") as tls:
        assert echo(tls, b"ping") == b"ping"
        negotiated = tls.cipher()[0]
    info = server.handshake().info
    assert info["tls_version"] == 0x0304
    assert info["cipher_suite"] == IANA_IDS[negotiated]
    assert ssl.PEM_cert_to_DER_cert(info["server_cert"]) == der(a)
    assert info["client_cert_chain"] == [] and info["client_cert_name"] is None
    assert info["client_cert_error"] is None

    tls12 = client_context(
        ca, max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"
    )
    with connect(server, tls12, "a.test") as tls:
        assert echo(tls, b"ping") == b"ping"
        assert tls.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    info = server.handshake().info
    assert info["tls_version"] == 0x0303
    assert info["cipher_suite"] == IANA_IDS["ECDHE-ECDSA-AES128-GCM-SHA256"]


def test_tls13_minimum_refuses_tls12_client(ca: trustme.CA, tmp_path: Path, serve: Any) -> None:
    store = ServerTLS(
        default=write_pair(tmp_path, "localhost", ca.issue_cert("localhost")),
        min_version=ssl.TLSVersion.TLSv1_3,
    )
    server = serve(store)
    assert_refused(server, client_context(ca, max_version=ssl.TLSVersion.TLSv1_2), "localhost")
    with connect(server, client_context(ca), "localhost") as tls:
        assert echo(tls, b"ping") == b"ping"
    assert server.handshake().info["tls_version"] == 0x0304


def _adequacy(serve: Any, ca: trustme.CA, store: ServerTLS, client: ssl.SSLContext) -> bool:
    server = serve(store)
    with connect(server, client, "localhost") as tls:
        assert echo(tls, b"ping") == b"ping"
        client_view = tls.version(), tls.cipher()[0]
    handshake = server.handshake()
    assert handshake.info["tls_version"] == {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[client_view[0]]
    return handshake.adequate


def test_h2_adequate_for_tls13_and_ephemeral_aead_tls12(
    ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    store = ServerTLS(default=write_pair(tmp_path, "localhost", ca.issue_cert("localhost")))
    assert _adequacy(serve, ca, store, client_context(ca))
    tls12 = client_context(
        ca, max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"
    )
    assert _adequacy(serve, ca, store, tls12)


@pytest.fixture
def rsa_ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.RSA)


def test_h2_inadequate_for_tls12_rsa_key_exchange(
    rsa_ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    leaf = rsa_ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    store = ServerTLS(default=write_pair(tmp_path, "rsa", leaf), ciphers="AES128-GCM-SHA256")
    client = client_context(
        rsa_ca, max_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256"
    )
    assert not _adequacy(serve, rsa_ca, store, client)


def test_h2_inadequate_for_tls12_non_aead_cipher(
    rsa_ca: trustme.CA, tmp_path: Path, serve: Any
) -> None:
    suite = "ECDHE-RSA-AES128-SHA256"
    leaf = rsa_ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    try:
        client = client_context(rsa_ca, max_version=ssl.TLSVersion.TLSv1_2, ciphers=suite)
        store = ServerTLS(default=write_pair(tmp_path, "rsa", leaf), ciphers=suite)
    except (ssl.SSLError, TLSConfigError) as exc:
        pytest.skip(f"local OpenSSL does not offer {suite}: {exc}")
    assert not _adequacy(serve, rsa_ca, store, client)


def test_asyncio_transport_gets_sni_certificate_and_connection_info(
    ca: trustme.CA, tmp_path: Path
) -> None:
    # The server runs on asyncio, whose SSL transport uses SSLObject.
    a, b = ca.issue_cert("a.test"), ca.issue_cert("b.test")
    store = ServerTLS(
        by_name={"a.test": write_pair(tmp_path, "a", a), "b.test": write_pair(tmp_path, "b", b)}
    )

    async def main() -> tuple[bytes, dict[str, Any], bool]:
        infos: asyncio.Queue[tuple[dict[str, Any], bool]] = asyncio.Queue()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ssl_object = writer.get_extra_info("ssl_object")
            await infos.put((store.connection_info(ssl_object), h2_adequate(ssl_object)))
            writer.write(await reader.readexactly(4))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=store.context)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(ca), server_hostname="b.test"
            )
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"
            peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            info, adequate = await asyncio.wait_for(infos.get(), TIMEOUT)
            return peer, info, adequate

    peer, info, adequate = asyncio.run(main())
    assert peer == der(b)
    assert ssl.PEM_cert_to_DER_cert(info["server_cert"]) == der(b)
    assert info["tls_version"] == 0x0304 and adequate


# --- configuration errors ---------------------------------------------------------


def test_no_certificate_at_all_is_an_error() -> None:
    with pytest.raises(TLSConfigError) as excinfo:
        ServerTLS()
    assert "no certificate" in one_line_error(excinfo)


def test_client_certificates_need_a_ca_file(ca: trustme.CA, tmp_path: Path) -> None:
    pair = write_pair(tmp_path, "localhost", ca.issue_cert("localhost"))
    for mode in ("required", "optional"):
        with pytest.raises(TLSConfigError) as excinfo:
            ServerTLS(default=pair, client_cert=mode)
        assert "ca_certs" in one_line_error(excinfo)
        with pytest.raises(TLSConfigError) as excinfo:
            create_server_context(pair.certfile, pair.keyfile, client_cert=mode)
        assert "ca_certs" in one_line_error(excinfo)
    with pytest.raises(TLSConfigError) as excinfo:
        ServerTLS(default=pair, client_cert="sometimes", ca_certs=pair.certfile)
    assert "sometimes" in one_line_error(excinfo)


def test_bad_ca_file_is_named(ca: trustme.CA, tmp_path: Path) -> None:
    pair = write_pair(tmp_path, "localhost", ca.issue_cert("localhost"))
    missing = str(tmp_path / "absent-ca.pem")
    garbage = tmp_path / "garbage-ca.pem"
    garbage.write_text("not a certificate\n")
    for path in (missing, str(garbage)):
        with pytest.raises(TLSConfigError) as excinfo:
            ServerTLS(default=pair, client_cert="required", ca_certs=path)
        assert path in one_line_error(excinfo)


def test_bad_cipher_string_is_an_error(ca: trustme.CA, tmp_path: Path) -> None:
    pair = write_pair(tmp_path, "localhost", ca.issue_cert("localhost"))
    with pytest.raises(TLSConfigError) as excinfo:
        ServerTLS(default=pair, ciphers="NOT-A-CIPHER")
    assert "NOT-A-CIPHER" in one_line_error(excinfo)


def test_sni_entry_with_mismatched_key_is_named(ca: trustme.CA, tmp_path: Path) -> None:
    sni = tmp_path / "sni"
    sni.mkdir()
    write_pair(sni, "a.test", ca.issue_cert("a.test"))
    other = ca.issue_cert("other.test")
    (sni / "a.test.key").write_bytes(other.private_key_pem.bytes())
    with pytest.raises(TLSConfigError) as excinfo:
        ServerTLS(sni_dir=str(sni))
    assert str(sni / "a.test.key") in one_line_error(excinfo)


def test_empty_or_missing_sni_dir_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("nothing here\n")
    for path in (empty, tmp_path / "absent"):
        with pytest.raises(TLSConfigError) as excinfo:
            ServerTLS(sni_dir=str(path))
        assert str(path) in one_line_error(excinfo)


def test_same_name_twice_is_an_error(ca: trustme.CA, tmp_path: Path) -> None:
    sni = tmp_path / "sni"
    sni.mkdir()
    pair = write_pair(sni, "a.test", ca.issue_cert("a.test"))
    with pytest.raises(TLSConfigError) as excinfo:
        ServerTLS(by_name={"a.test": pair}, sni_dir=str(sni))
    assert "a.test" in one_line_error(excinfo)
