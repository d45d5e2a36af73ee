"""Production TLS through the `plexicorn` command: live reload, mistakes, and interop with openssl and curl.

Every server here is a real process started with the flags a user would type; certificates are
trustme's (or built with cryptography when trustme cannot make them, e.g. expired ones).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import free_port
from test_cli import APPS, MODULE_COMMAND, Plexicorn, assert_one_error_line, curl, plexicorn, run_cli  # noqa: F401

TIMEOUT = 10.0
PASSWORD = "correct horse battery staple"


def _curl_has_http2() -> bool:
    if shutil.which("curl") is None:
        return False
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=TIMEOUT).stdout
    return "HTTP2" in version


requires_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
requires_curl_http2 = pytest.mark.skipif(not _curl_has_http2(), reason="no curl with HTTP/2 support installed")


# -- certificate files ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path
    serial: int


def issue(ca: trustme.CA, directory: Path, stem: str, *names: str) -> Leaf:
    """A leaf for `names` (CN = the first) written as STEM.pem + STEM.key."""
    leaf = ca.issue_cert(*names, common_name=names[0])
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return Leaf(cert, key, x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)


def replace_file(path: Path, data: bytes) -> None:
    """Atomically, as deployment tools do: the server never reads a half-written file."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def install(leaf: Leaf, cert: Path, key: Path) -> None:
    replace_file(key, leaf.key.read_bytes())
    replace_file(cert, leaf.cert.read_bytes())


def expired_certificate(directory: Path) -> tuple[Path, Path, datetime]:
    """A self-signed localhost certificate that expired yesterday (trustme only issues valid ones)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30)).not_valid_after(now - timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256()))
    cert, key_path = directory / "expired.pem", directory / "expired.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_path, certificate.not_valid_after_utc


def encrypt_key(source: Path, target: Path, password: str) -> Path:
    key = serialization.load_pem_private_key(source.read_bytes(), None)
    target.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(password.encode())))
    return target


# -- clients ----------------------------------------------------------------------------------------

def served_certificate(port: int, verify: ssl.SSLContext, server_name: str = "localhost") -> x509.Certificate:
    """The leaf a new, verified TLS connection to 127.0.0.1:port gets for `server_name`."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with verify.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def get_hello(port: int, verify: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(http2=True, verify=verify, timeout=TIMEOUT) as client:
        return client.get(f"https://localhost:{port}/hello")


def s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    # stdin at EOF: s_client does the handshake, prints what it negotiated and quits.
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT,
                          # s_client echoes what the server sends: HTTP/2 frames are binary.
                          errors="replace")


def printed_certificate_names(output: str) -> tuple[str, list[str]]:
    """(subject, SAN entries) of the certificate s_client printed, as `openssl x509` reads them."""
    match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", output, re.S)
    assert match, output
    parsed = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"],
                            input=match.group(0), capture_output=True, text=True, timeout=TIMEOUT)
    assert parsed.returncode == 0, parsed.stderr
    lines = parsed.stdout.splitlines()
    subject = next(line for line in lines if line.startswith("subject="))
    header = next(i for i, line in enumerate(lines) if "Subject Alternative Name" in line)
    return subject, [entry.strip() for entry in lines[header + 1].split(",")]


def start_tls_server(plexicorn, app: str, *args: object) -> tuple[Plexicorn, int]:  # type: ignore[no-untyped-def]
    port = free_port()
    process = plexicorn(app, "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", *args)
    assert process.wait_listening() == port
    return process, port


# -- live reload ----------------------------------------------------------------------------------

def test_sighup_reloads_replaced_files_and_a_broken_file_keeps_the_current_certificate(
        plexicorn, ca, verify, tmp_path):
    first, second = issue(ca, tmp_path, "first", "localhost"), issue(ca, tmp_path, "second", "localhost")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    install(first, cert, key)
    process, port = start_tls_server(plexicorn, "good:app", "--certfile", cert, "--keyfile", key,
                                     "--tls-reload-interval", "0")
    assert served_certificate(port, verify).serial_number == first.serial

    install(second, cert, key)
    # Interval 0 watches nothing: the files are read again on SIGHUP, not per handshake.
    assert served_certificate(port, verify).serial_number == first.serial
    process.signal(signal.SIGHUP)
    process.stderr.wait_for("TLS certificates reloaded")
    assert served_certificate(port, verify).serial_number == second.serial
    assert get_hello(port, verify).text == "Hello over HTTP/2"

    replace_file(cert, b"-----BEGIN CERTIFICATE-----\ntruncated\n")
    process.signal(signal.SIGHUP)
    line = process.stderr.wait_for("TLS reload failed")
    assert "still serving the previous certificates" in line
    assert f"certificate file '{cert}' does not contain a PEM certificate" in line
    assert served_certificate(port, verify).serial_number == second.serial
    assert get_hello(port, verify).text == "Hello over HTTP/2"

    assert process.process.poll() is None
    assert process.stop() == 0
    assert "Traceback" not in process.stderr.text, process.stderr.text


def test_changed_files_are_reloaded_without_a_signal_and_a_fixed_file_recovers(plexicorn, ca, verify, tmp_path):
    first, second, third = (issue(ca, tmp_path, stem, "localhost") for stem in ("first", "second", "third"))
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    install(first, cert, key)
    process, port = start_tls_server(plexicorn, "good:app", "--certfile", cert, "--keyfile", key,
                                     "--tls-reload-interval", "0.2")
    assert served_certificate(port, verify).serial_number == first.serial

    # The server waits a moment after seeing a change, so the key and the certificate renamed one
    # after the other are read as a pair; only the end state is asserted, not the absence of a retry.
    install(second, cert, key)
    process.stderr.wait_for("TLS certificates reloaded")
    assert served_certificate(port, verify).serial_number == second.serial

    replace_file(key, b"not a key\n")
    line = process.stderr.wait_for("TLS reload failed")
    assert f"private key '{key}' is not a PEM private key" in line
    assert served_certificate(port, verify).serial_number == second.serial

    install(third, cert, key)
    process.stderr.wait_for("TLS certificates reloaded")
    assert served_certificate(port, verify).serial_number == third.serial
    assert get_hello(port, verify).text == "Hello over HTTP/2"
    assert process.stop() == 0
    assert "Traceback" not in process.stderr.text, process.stderr.text


# -- user mistakes: one line, exit status 2 ---------------------------------------------------------

@dataclass(frozen=True)
class Material:
    directory: Path
    ca: Path
    localhost: Leaf
    other: Leaf
    expired: tuple[Path, Path, datetime]
    encrypted_key: Path
    not_pem: Path
    empty_dir: Path


@pytest.fixture(scope="module")
def material(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Material:
    directory = tmp_path_factory.mktemp("tls-cli")
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    localhost = issue(ca, directory, "localhost", "localhost", "127.0.0.1")
    not_pem = directory / "not-pem.txt"
    not_pem.write_text("these are not the certificates you are looking for\n")
    empty_dir = directory / "empty"
    empty_dir.mkdir()
    return Material(directory, ca_path, localhost, issue(ca, directory, "other", "a.test"),
                    expired_certificate(directory),
                    encrypt_key(localhost.key, directory / "encrypted.key", PASSWORD), not_pem, empty_dir)


def _expired_message(m: Material) -> str:
    return f"certificate '{m.expired[0]}' expired on {m.expired[2].strftime('%Y-%m-%d %H:%M UTC')}"


TLS_MISTAKES = [
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.localhost.key, "--client-cert", "required"],
                 lambda m: ["--client-cert required needs --ca-certs"], id="client-cert-without-ca-certs"),
    pytest.param(lambda m: ["--hsts", "100"], lambda m: ["--hsts needs TLS"], id="hsts-without-tls"),
    pytest.param(lambda m: ["--redirect-http", "127.0.0.1:0"], lambda m: ["--redirect-http needs TLS"],
                 id="redirect-http-without-tls"),
    pytest.param(lambda m: ["--ca-certs", m.ca], lambda m: ["--ca-certs needs TLS"], id="ca-certs-without-tls"),
    pytest.param(lambda m: ["--cert", "nonsense"],
                 lambda m: ["invalid --cert 'nonsense'", "NAME=CERT.pem[,KEY.pem]"], id="cert-without-name"),
    pytest.param(lambda m: ["--cert", "a.test=missing.pem"],
                 lambda m: ["cannot read certificate file 'missing.pem': No such file or directory"],
                 id="cert-missing-file"),
    pytest.param(lambda m: ["--cert", f"bad_name!={m.other.cert},{m.other.key}"],
                 lambda m: ["invalid SNI name 'bad_name!'"], id="cert-invalid-name"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.localhost.key, "--alpn", "h3"],
                 lambda m: ["--alpn takes h2 and/or http/1.1"], id="alpn-h3"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.localhost.key, "--tls-min-version", "1.1"],
                 lambda m: ["--tls-min-version", "invalid choice: '1.1'"], id="tls-min-version-1.1"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.localhost.key, "--tls-ciphers", "NOPE"],
                 lambda m: ["invalid cipher string 'NOPE'"], id="bad-cipher-string"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.localhost.key,
                            "--tls-reload-interval", "nan"],
                 lambda m: ["--tls-reload-interval must be a number of seconds, not nan"], id="reload-interval-nan"),
    pytest.param(lambda m: ["--certfile", m.expired[0], "--keyfile", m.expired[1]], lambda m: [_expired_message(m)],
                 id="expired-certificate"),
    pytest.param(lambda m: ["--cert", f"a.test={m.expired[0]},{m.expired[1]}"], lambda m: [_expired_message(m)],
                 id="expired-sni-certificate"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.other.key],
                 lambda m: [f"private key '{m.other.key}' does not match certificate '{m.localhost.cert}'"],
                 id="key-does-not-match"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.encrypted_key],
                 lambda m: [f"private key '{m.encrypted_key}' is encrypted: give its password"],
                 id="encrypted-key-without-password"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.encrypted_key,
                            "--keyfile-password", "wrong"],
                 lambda m: [f"cannot decrypt private key '{m.encrypted_key}': wrong password"],
                 id="encrypted-key-wrong-password"),
    pytest.param(lambda m: ["--sni-dir", m.empty_dir],
                 lambda m: [f"SNI directory '{m.empty_dir}' holds no certificates"], id="empty-sni-dir"),
    pytest.param(lambda m: ["--sni-dir", m.directory / "nowhere"],
                 lambda m: [f"cannot read SNI directory '{m.directory / 'nowhere'}'"], id="missing-sni-dir"),
    pytest.param(lambda m: ["--certfile", m.localhost.cert, "--keyfile", m.localhost.key,
                            "--ca-certs", m.not_pem, "--client-cert", "required"],
                 lambda m: [f"CA certificates file '{m.not_pem}' does not contain a PEM certificate"],
                 id="ca-certs-not-pem"),
]


@pytest.mark.parametrize(("args", "expected"), TLS_MISTAKES)
def test_tls_mistake_is_one_error_line_and_exit_status_2(material, tmp_path, args, expected):
    result = run_cli("good:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{free_port()}", *args(material),
                     cwd=tmp_path)
    line = assert_one_error_line(result)
    for text in expected(material):
        assert text in line


def test_encrypted_key_is_served_with_the_right_password(plexicorn, material, verify):
    process, port = start_tls_server(plexicorn, "good:app", "--certfile", material.localhost.cert,
                                     "--keyfile", material.encrypted_key, "--keyfile-password", PASSWORD)
    assert served_certificate(port, verify).serial_number == material.localhost.serial
    assert process.stop() == 0


# -- openssl s_client and curl against SNI certificates ---------------------------------------------

@dataclass(frozen=True)
class SNIServer:
    port: int
    ca: str
    localhost: Leaf
    other: Leaf


@pytest.fixture(scope="module")
def sni_server(material: Material):  # type: ignore[no-untyped-def]
    """One server for the read-only interop tests: localhost by default, a.test by SNI."""
    port = free_port()
    process = Plexicorn(["good:app", "--app-dir", str(APPS), "--bind", f"127.0.0.1:{port}",
                         "--certfile", str(material.localhost.cert), "--keyfile", str(material.localhost.key),
                         "--cert", f"a.test={material.other.cert},{material.other.key}"],
                        cwd=material.directory, env=None, command=MODULE_COMMAND)
    try:
        assert process.wait_listening() == port
        yield SNIServer(port, str(material.ca), material.localhost, material.other)
        assert process.stop() == 0
    finally:
        process.kill()


@requires_openssl
@pytest.mark.parametrize("alpn", ["h2", "http/1.1"])
def test_openssl_gets_the_sni_certificate_and_the_alpn_protocol_it_offers(sni_server, alpn):
    result = s_client(sni_server.port, "-servername", "a.test", "-verify_hostname", "a.test", "-alpn", alpn,
                      "-CAfile", sni_server.ca)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ALPN protocol: {alpn}\n" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout
    subject, names = printed_certificate_names(result.stdout)
    assert subject.endswith("CN = a.test"), subject
    assert names == ["DNS:a.test"]


@requires_openssl
def test_openssl_gets_the_default_certificate_for_localhost_and_for_unknown_names(sni_server):
    for server_name in ("localhost", "unknown.test"):
        result = s_client(sni_server.port, "-servername", server_name, "-verify_hostname", "localhost",
                          "-CAfile", sni_server.ca)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Verify return code: 0 (ok)" in result.stdout
        subject, names = printed_certificate_names(result.stdout)
        assert subject.endswith("CN = localhost"), subject
        assert names == ["DNS:localhost", "IP Address:127.0.0.1"]


@requires_openssl
def test_openssl_tls12_gets_only_ecdhe_aead_suites(sni_server):
    # trustme keys are ECDSA, so both suites below fit the certificate and only the cipher differs:
    # the CBC one fails because the server's TLS 1.2 list excludes non-AEAD suites (RFC 9113 §9.2.2).
    aead = s_client(sni_server.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-CAfile", sni_server.ca)
    assert aead.returncode == 0, aead.stdout + aead.stderr
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in aead.stdout
    assert "Protocol  : TLSv1.2" in aead.stdout

    for cipher in ("ECDHE-ECDSA-AES128-SHA", "AES128-SHA"):
        cbc = s_client(sni_server.port, "-tls1_2", "-cipher", cipher, "-CAfile", sni_server.ca)
        assert cbc.returncode != 0, cbc.stdout
        assert "handshake failure" in cbc.stderr, cbc.stderr
        assert "Cipher is (NONE)" in cbc.stdout


@requires_openssl
def test_tls_min_version_13_refuses_tls12_and_accepts_tls13(plexicorn, material):
    process, port = start_tls_server(plexicorn, "good:app", "--certfile", material.localhost.cert,
                                     "--keyfile", material.localhost.key, "--tls-min-version", "1.3")
    old = s_client(port, "-tls1_2", "-CAfile", str(material.ca))
    assert old.returncode != 0, old.stdout
    assert "protocol version" in old.stderr, old.stderr
    new = s_client(port, "-tls1_3", "-CAfile", str(material.ca))
    assert new.returncode == 0, new.stdout + new.stderr
    assert "New, TLSv1.3, Cipher is TLS_" in new.stdout
    assert "Verify return code: 0 (ok)" in new.stdout
    assert process.stop() == 0


def curl_version_and_body(*args: str) -> tuple[str, str]:
    result = curl("-w", "\n%{http_version}", *args)
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    return version, body


@requires_curl_http2
@pytest.mark.parametrize(("flag", "version"), [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_verifies_the_sni_certificate_over_each_protocol(sni_server, flag, version):
    port = sni_server.port
    assert curl_version_and_body(flag, "--cacert", sni_server.ca, "--resolve", f"a.test:{port}:127.0.0.1",
                                 f"https://a.test:{port}/hello") == (version, f"Hello over HTTP/{version}")
    assert curl_version_and_body(flag, "--cacert", sni_server.ca, "--resolve", f"localhost:{port}:127.0.0.1",
                                 f"https://localhost:{port}/hello") == (version, f"Hello over HTTP/{version}")


@requires_curl_http2
def test_curl_rejects_an_unknown_name_given_the_default_certificate(sni_server):
    port = sni_server.port
    result = curl("--http2", "--cacert", sni_server.ca, "--resolve", f"b.test:{port}:127.0.0.1",
                  f"https://b.test:{port}/hello")
    assert result.returncode == 60, result.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert "b.test" in result.stderr
    assert result.stdout == ""


@requires_curl_http2
def test_widened_ciphers_refuse_http2_on_a_non_aead_suite_but_serve_http11(plexicorn, material):
    process, port = start_tls_server(plexicorn, "good:app", "--certfile", material.localhost.cert,
                                     "--keyfile", material.localhost.key,
                                     "--tls-ciphers", "ECDHE+AESGCM:ECDHE-ECDSA-AES128-SHA")
    url = f"https://localhost:{port}/hello"
    cbc = ["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-SHA", "--cacert", str(material.ca)]
    # RFC 9113 §9.2.2: HTTP/2 on this suite gets GOAWAY INADEQUATE_SECURITY (0xc) before any stream.
    refused = curl("-v", "--http2", *cbc, url)
    assert refused.returncode == 16, refused.stderr  # CURLE_HTTP2
    assert re.search(r"GOAWAY, error=12\b", refused.stderr), refused.stderr
    assert refused.stdout == ""
    # HTTP/1.1 has no such rule: the same suite serves it.
    assert curl_version_and_body("--http1.1", *cbc, url) == ("1.1", "Hello over HTTP/1.1")
    assert curl_version_and_body("--http2", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256",
                                 "--cacert", str(material.ca), url) == ("2", "Hello over HTTP/2")
    assert process.stop() == 0


# -- client certificates with curl ----------------------------------------------------------------------

@requires_curl_http2
def test_required_client_certificate_with_curl(plexicorn, material, tmp_path):
    clients = trustme.CA()
    client_ca = tmp_path / "client-ca.pem"
    clients.cert_pem.write_to_path(str(client_ca))
    alice = clients.issue_cert("alice@example.org", common_name="alice")
    alice_cert, alice_key = tmp_path / "client.pem", tmp_path / "client.key"
    alice.cert_chain_pems[0].write_to_path(str(alice_cert))
    alice.private_key_pem.write_to_path(str(alice_key))
    # Signed by the server's CA, which the server does not trust for clients.
    stranger = issue(trustme.CA(), tmp_path, "stranger", "stranger.test")

    process, port = start_tls_server(plexicorn, "tls_echo:app", "--certfile", material.localhost.cert,
                                     "--keyfile", material.localhost.key,
                                     "--ca-certs", client_ca, "--client-cert", "required")
    url = f"https://localhost:{port}/"
    common = ["--cacert", str(material.ca)]

    refused = curl("--http2", *common, url)
    assert refused.returncode != 0
    assert "alert" in refused.stderr, refused.stderr
    assert refused.stdout == ""
    strange = curl("--http2", *common, "--cert", str(stranger.cert), "--key", str(stranger.key), url)
    assert strange.returncode != 0
    assert "alert" in strange.stderr, strange.stderr
    assert strange.stdout == ""

    expected_leaf = x509.load_pem_x509_certificate(alice_cert.read_bytes())
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        result = curl(flag, *common, "--cert", str(alice_cert), "--key", str(alice_key), url)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["http_version"] == version
        tls = answer["tls"]
        assert tls["client_cert_name"] == expected_leaf.subject.rfc4514_string()
        assert "CN=alice" in tls["client_cert_name"]
        assert x509.load_pem_x509_certificate(tls["client_cert_chain"][0].encode()) == expected_leaf
        assert tls["client_cert_error"] is None
        assert x509.load_pem_x509_certificate(tls["server_cert"].encode()).serial_number == material.localhost.serial
        assert tls["tls_version"] == 0x0304  # curl and the server both default to TLS 1.3
        assert isinstance(tls["cipher_suite"], int)
    assert process.stop() == 0
    assert "Traceback" not in process.stderr.text, process.stderr.text


# -- HTTP to HTTPS redirect and HSTS ------------------------------------------------------------------

def header_lines(head: str) -> dict[str, str]:
    headers = {}
    for line in head.splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


@requires_curl_http2
def test_redirect_http_answers_308_to_https_and_https_responses_carry_hsts(plexicorn, material):
    port, http_port = free_port(), free_port()
    process = plexicorn("good:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}",
                        "--certfile", material.localhost.cert, "--keyfile", material.localhost.key,
                        "--redirect-http", f"127.0.0.1:{http_port}", "--hsts", "600")
    listening = sorted(process.stderr.wait_for("Listening on").split("Listening on ")[1].strip() for _ in range(2))
    assert listening == [f"http://127.0.0.1:{http_port} (redirects to https)",
                         f"https://127.0.0.1:{port} (h2, http/1.1)"]

    redirect = curl("-I", f"http://127.0.0.1:{http_port}/x?y=1")
    assert redirect.returncode == 0, redirect.stderr
    assert redirect.stdout.startswith("HTTP/1.1 308 "), redirect.stdout
    headers = header_lines(redirect.stdout)
    assert headers["location"] == f"https://127.0.0.1:{port}/x?y=1"
    # RFC 6797 §7.2: HSTS over cleartext is ignored by clients and must not be sent.
    assert "strict-transport-security" not in headers

    for flag, status_line in (("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200 ")):
        https = curl("-I", flag, "--cacert", str(material.ca), f"https://localhost:{port}/hello")
        assert https.returncode == 0, https.stderr
        assert https.stdout.startswith(status_line), https.stdout
        assert header_lines(https.stdout)["strict-transport-security"] == "max-age=600"

    # A client following the redirect ends up on HTTPS with the name it asked for.
    followed = curl("-L", "--http2", "--cacert", str(material.ca), "-w", "\n%{url_effective}",
                    f"http://localhost:{http_port}/hello")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == f"Hello over HTTP/2\nhttps://localhost:{port}/hello"
    assert process.stop() == 0
