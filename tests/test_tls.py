"""TLS contexts and development certificates, exercised over real sockets."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plexicorn.tls import (
    DevCertificate,
    TLSConfigError,
    create_server_context,
    ensure_dev_certificate,
    trust_hint,
)

TIMEOUT = 10.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _snapshot(dev: DevCertificate) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (dev.ca_cert, dev.ca_key, dev.cert, dev.key)}


def _sans(cert: x509.Certificate) -> tuple[set[str], set[object]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class OneShotServer:
    """Accepts one TLS connection on 127.0.0.1 in a thread and records the outcome."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.alpn: str | None = None
        self.version: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(TIMEOUT)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.alpn = tls.selected_alpn_protocol()
                self.version = tls.version()
                tls.sendall(b"ok")
        except BaseException as exc:  # recorded for the test to inspect
            self.error = exc
        finally:
            self.listener.close()
            self.done.set()

    def finish(self) -> None:
        assert self.done.wait(TIMEOUT), "server thread did not finish"
        self.thread.join(TIMEOUT)


def _client_handshake(port: int, client_ctx: ssl.SSLContext) -> tuple[str | None, str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            data = b""
            while len(data) < 2:
                chunk = tls.recv(2 - len(data))
                if not chunk:
                    break
                data += chunk
            assert data == b"ok"
            return tls.selected_alpn_protocol(), tls.version() or "", tls.cipher()[0]


def _client(cafile: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


@pytest.fixture
def dev(tmp_path: Path) -> DevCertificate:
    return ensure_dev_certificate(tmp_path / "certs", ["example.test", "10.1.2.3"])


# --- development certificates ---------------------------------------------


def test_dev_certificate_created(dev: DevCertificate, tmp_path: Path) -> None:
    assert dev.ca_created and dev.leaf_created
    names = {p.name for p in (dev.ca_cert, dev.ca_key, dev.cert, dev.key)}
    assert names == {
        "plexicorn-dev-ca.pem", "plexicorn-dev-ca.key", "localhost.pem", "localhost.key"
    }
    for p in (dev.ca_cert, dev.ca_key, dev.cert, dev.key):
        assert p.is_file() and p.parent == tmp_path / "certs"
    assert _mode(tmp_path / "certs") == 0o700
    assert _mode(dev.ca_key) == 0o600 and _mode(dev.key) == 0o600
    assert _mode(dev.ca_cert) == 0o644 and _mode(dev.cert) == 0o644
    assert not [p for p in (tmp_path / "certs").iterdir() if p.name.endswith(".tmp")]

    ca = _cert(dev.ca_cert)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith(
        "Plexicorn development CA"
    )
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Plexicorn"
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    ca_life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3650) <= ca_life <= timedelta(days=3651)
    assert ca.not_valid_before_utc <= _utcnow() - timedelta(minutes=59)
    ca.verify_directly_issued_by(ca)  # self-signed

    leaf = _cert(dev.cert)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < timedelta(days=398)
    assert leaf.not_valid_after_utc - _utcnow() > timedelta(days=390)
    dns, ips = _sans(leaf)
    assert dns == {"localhost", "example.test"}
    assert ips == {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf_ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert leaf_ku.critical and leaf_ku.value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    leaf.verify_directly_issued_by(ca)
    with pytest.raises(ValueError):
        ca.verify_directly_issued_by(leaf)  # sanity: the check can fail


def test_existing_directory_mode_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    ensure_dev_certificate(tmp_path)
    assert _mode(tmp_path) == 0o755


def test_key_modes_ignore_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        dev = ensure_dev_certificate(tmp_path / "certs")
    finally:
        os.umask(old)
    assert _mode(dev.ca_key) == 0o600 and _mode(dev.key) == 0o600
    assert _mode(dev.cert) == 0o644


def test_second_call_reuses_everything(dev: DevCertificate, tmp_path: Path) -> None:
    before = _snapshot(dev)
    mtimes = {p: p.stat().st_mtime_ns for p in (dev.ca_cert, dev.ca_key, dev.cert, dev.key)}
    again = ensure_dev_certificate(tmp_path / "certs", ["10.1.2.3", "example.test"])
    assert not again.ca_created and not again.leaf_created
    assert _snapshot(again) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # A subset of the names already covered does not force a renewal either.
    assert not ensure_dev_certificate(tmp_path / "certs").leaf_created


def test_leaf_renewed_near_expiry_ca_kept(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    old = ensure_dev_certificate(certs, now=_utcnow() - timedelta(days=380))
    old_snapshot = _snapshot(old)
    old_serial = _cert(old.cert).serial_number

    new = ensure_dev_certificate(certs)
    assert new.leaf_created and not new.ca_created
    assert new.ca_cert.read_bytes() == old_snapshot["plexicorn-dev-ca.pem"]
    assert new.ca_key.read_bytes() == old_snapshot["plexicorn-dev-ca.key"]
    leaf = _cert(new.cert)
    assert leaf.serial_number != old_serial
    assert new.key.read_bytes() != old_snapshot["localhost.key"]
    assert leaf.not_valid_after_utc - _utcnow() > timedelta(days=390)
    leaf.verify_directly_issued_by(_cert(new.ca_cert))
    assert _mode(new.key) == 0o600


def test_leaf_kept_outside_renewal_window(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    # Expires about 37 days from now: outside the 30-day window.
    old = _snapshot(ensure_dev_certificate(certs, now=_utcnow() - timedelta(days=360)))
    again = ensure_dev_certificate(certs)
    assert not again.leaf_created and _snapshot(again) == old


def test_ca_recreated_near_expiry(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    old = _snapshot(ensure_dev_certificate(certs, now=_utcnow() - timedelta(days=3630)))
    new = ensure_dev_certificate(certs)
    assert new.ca_created and new.leaf_created
    assert new.ca_cert.read_bytes() != old["plexicorn-dev-ca.pem"]
    _cert(new.cert).verify_directly_issued_by(_cert(new.ca_cert))


def test_extra_name_added_later_renews_leaf(dev: DevCertificate, tmp_path: Path) -> None:
    ca_before = dev.ca_cert.read_bytes()
    extra = ["example.test", "10.1.2.3", "API.test.", "fe80::1"]
    new = ensure_dev_certificate(tmp_path / "certs", extra)
    assert new.leaf_created and not new.ca_created
    assert new.ca_cert.read_bytes() == ca_before
    dns, ips = _sans(_cert(new.cert))
    assert {"localhost", "example.test", "api.test"} <= dns
    assert ipaddress.ip_address("fe80::1") in ips and ipaddress.ip_address("10.1.2.3") in ips


def test_leaf_renewed_when_ca_replaced_or_leaf_missing(dev: DevCertificate, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    dev.key.unlink()
    fixed = ensure_dev_certificate(certs)
    assert fixed.leaf_created and not fixed.ca_created
    assert fixed.key.exists()

    # A leaf signed by some other CA is replaced; the current CA stays.
    other = ensure_dev_certificate(tmp_path / "other")
    ca_before = fixed.ca_cert.read_bytes()
    fixed.cert.write_bytes(other.cert.read_bytes())
    fixed.key.write_bytes(other.key.read_bytes())
    again = ensure_dev_certificate(certs)
    assert again.leaf_created and not again.ca_created
    assert again.ca_cert.read_bytes() == ca_before
    _cert(again.cert).verify_directly_issued_by(_cert(again.ca_cert))

    # Garbage in the CA file makes a new CA and a new leaf from it.
    again.ca_cert.write_text("not a certificate")
    rebuilt = ensure_dev_certificate(certs)
    assert rebuilt.ca_created and rebuilt.leaf_created
    _cert(rebuilt.cert).verify_directly_issued_by(_cert(rebuilt.ca_cert))


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TLSConfigError) as info:
        ensure_dev_certificate(blocker / "certs")
    assert "\n" not in str(info.value) and "certs" in str(info.value)


def test_invalid_extra_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        ensure_dev_certificate(tmp_path / "certs", ["bad name"])
    assert "'bad name'" in str(info.value)
    assert not (tmp_path / "certs").exists()


def test_trust_hint_names_the_ca(dev: DevCertificate) -> None:
    hint = trust_hint(dev.ca_cert)
    assert "\n" not in hint
    assert f"--cacert {dev.ca_cert}" in hint


# --- real handshakes ---------------------------------------------------------


def test_handshake_with_dev_cert_negotiates_h2(dev: DevCertificate) -> None:
    server = OneShotServer(create_server_context(dev.cert, dev.key))
    alpn, version, cipher = _client_handshake(server.port, _client(dev.ca_cert, ["h2", "http/1.1"]))
    server.finish()
    assert server.error is None
    assert alpn == "h2" and server.alpn == "h2"
    assert version in ("TLSv1.2", "TLSv1.3")


def test_handshake_http11_only_client(dev: DevCertificate) -> None:
    server = OneShotServer(create_server_context(dev.cert, dev.key))
    alpn, _, _ = _client_handshake(server.port, _client(dev.ca_cert, ["http/1.1"]))
    server.finish()
    assert server.error is None and alpn == "http/1.1"


def test_tls12_uses_ecdhe_aead_only(dev: DevCertificate) -> None:
    server = OneShotServer(create_server_context(dev.cert, dev.key))
    client = _client(dev.ca_cert, ["h2"])
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    alpn, version, cipher = _client_handshake(server.port, client)
    server.finish()
    assert (alpn, version) == ("h2", "TLSv1.2")
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)

    # A TLS 1.2 client offering only a CBC suite finds nothing acceptable.
    server = OneShotServer(create_server_context(dev.cert, dev.key))
    cbc = _client(dev.ca_cert)
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        _client_handshake(server.port, cbc)
    server.finish()
    assert isinstance(server.error, ssl.SSLError)


def _tls11_client(cafile: Path) -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=str(cafile))
    try:
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
        client.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"local OpenSSL cannot configure a TLS 1.1 client: {exc}")
    return client


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TLSVersion.TLSv1/TLSv1_1
def test_tls11_client_rejected(dev: DevCertificate) -> None:
    # Control: a deliberately weakened server does speak TLS 1.1 with this
    # client, so the rejection below comes from our defaults.
    weak = create_server_context(dev.cert, dev.key, min_version=ssl.TLSVersion.TLSv1)
    weak.set_ciphers("DEFAULT:@SECLEVEL=0")
    server = OneShotServer(weak)
    try:
        _, version, _ = _client_handshake(server.port, _tls11_client(dev.ca_cert))
    except ssl.SSLError as exc:
        server.finish()
        pytest.skip(f"local OpenSSL cannot complete a TLS 1.1 handshake: {exc}")
    server.finish()
    assert version == "TLSv1.1"

    server = OneShotServer(create_server_context(dev.cert, dev.key))
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        _client_handshake(server.port, _tls11_client(dev.ca_cert))
    server.finish()
    assert isinstance(server.error, ssl.SSLError) and server.version is None


def test_chain_with_intermediate_verifies(tmp_path: Path) -> None:
    root = trustme.CA()
    leaf = root.create_child_ca().issue_cert("localhost")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    assert len(leaf.cert_chain_pems) == 2
    key = tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    ca_file = tmp_path / "root.pem"
    root.cert_pem.write_to_path(str(ca_file))

    server = OneShotServer(create_server_context(chain, key))
    alpn, _, _ = _client_handshake(server.port, _client(ca_file, ["h2"]))
    server.finish()
    assert server.error is None and alpn == "h2"


# --- configuration errors ----------------------------------------------------


def _check_one_line(exc: TLSConfigError) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


@pytest.fixture
def issued(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Certificate, key and issuing CA files from a throwaway trustme CA."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert, key, ca_file


def test_context_defaults(issued: tuple[Path, Path, Path]) -> None:
    cert, key, _ = issued
    ctx = create_server_context(cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        assert ctx.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in tls12)


def test_key_in_certificate_file(tmp_path: Path, issued: tuple[Path, Path, Path]) -> None:
    cert, key, _ = issued
    combined = tmp_path / "combined.pem"
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    assert isinstance(create_server_context(combined), ssl.SSLContext)
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert)  # no key anywhere
    assert "cert.pem" in _check_one_line(info.value)


def test_mismatched_key(tmp_path: Path, issued: tuple[Path, Path, Path]) -> None:
    cert, _, _ = issued
    other_key = tmp_path / "other.key"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(other_key))
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, other_key)
    text = _check_one_line(info.value)
    assert "does not match" in text and "other.key" in text and "cert.pem" in text


def test_missing_and_non_pem_files(tmp_path: Path, issued: tuple[Path, Path, Path]) -> None:
    cert, key, _ = issued
    with pytest.raises(TLSConfigError) as info:
        create_server_context(tmp_path / "absent.pem", key)
    text = _check_one_line(info.value)
    assert "absent.pem" in text and "No such file" in text
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, tmp_path / "absent.key")
    assert "absent.key" in _check_one_line(info.value)

    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(TLSConfigError) as info:
        create_server_context(junk, key)
    assert "junk.pem" in _check_one_line(info.value)
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, junk)
    assert "junk.pem" in _check_one_line(info.value)


def _self_signed(tmp_path: Path, not_before: datetime, not_after: datetime) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_expired_certificate(tmp_path: Path) -> None:
    expiry = datetime(2024, 1, 1, tzinfo=timezone.utc)
    cert, key = _self_signed(tmp_path, expiry - timedelta(days=30), expiry)
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, key)
    assert _check_one_line(info.value) == f"certificate '{cert}' expired on 2024-01-01 00:00 UTC"


def test_not_yet_valid_certificate(tmp_path: Path) -> None:
    start = _utcnow() + timedelta(days=2)
    cert, key = _self_signed(tmp_path, start, start + timedelta(days=30))
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, key)
    assert "not valid before" in _check_one_line(info.value)


def test_encrypted_key(tmp_path: Path, issued: tuple[Path, Path, Path]) -> None:
    cert, key, ca_file = issued
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )

    # The decrypted key really serves: a verifying client completes a handshake.
    server = OneShotServer(create_server_context(cert, encrypted, password="pw"))
    alpn, _, _ = _client_handshake(server.port, _client(ca_file, ["h2"]))
    server.finish()
    assert server.error is None and alpn == "h2"

    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, encrypted)
    expected = f"private key '{encrypted}' is encrypted: give its password"
    assert _check_one_line(info.value) == expected
    with pytest.raises(TLSConfigError) as info:
        create_server_context(cert, encrypted, password="wrong")
    text = _check_one_line(info.value)
    assert "wrong password" in text and "enc.key" in text

    # A password for an unencrypted key is harmless.
    assert isinstance(create_server_context(cert, key, password="pw"), ssl.SSLContext)



def test_renewal_of_an_expiring_leaf_keeps_the_names_it_covered(tmp_path):
    from datetime import datetime, timedelta, timezone
    from cryptography import x509
    from plexicorn.tls.devcert import ensure_dev_certificate, leaf_names

    long_ago = datetime.now(timezone.utc) - timedelta(days=380)
    first = ensure_dev_certificate(tmp_path, ["app.test"], now=long_ago)
    old_serial = x509.load_pem_x509_certificate(first.cert.read_bytes()).serial_number
    # A plain `--dev-cert` start (no extra names) renews the expiring leaf...
    renewed = ensure_dev_certificate(tmp_path)
    leaf = x509.load_pem_x509_certificate(renewed.cert.read_bytes())
    assert renewed.leaf_created and leaf.serial_number != old_serial
    # ...and the name added earlier is still covered.
    assert "app.test" in leaf_names(leaf)
