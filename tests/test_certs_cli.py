"""`plexicorn certs create|show|trust-help`, run as real processes on files in tmp_path.

The certificates `certs create` writes must be the ones `--dev-cert` serves: the last test proves it
with curl trusting only the created CA.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from conftest import free_port
from plexicorn.tls import ensure_dev_certificate
from test_cli import APPS, MODULE_COMMAND, Plexicorn, assert_one_error_line, curl

TIMEOUT = 10.0
CA, CA_KEY, LEAF, LEAF_KEY = "plexicorn-dev-ca.pem", "plexicorn-dev-ca.key", "localhost.pem", "localhost.key"
FILES = (CA, CA_KEY, LEAF, LEAF_KEY)


def certs(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MODULE_COMMAND, "certs", *(str(arg) for arg in args)], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {name: ((directory / name).read_bytes(), (directory / name).stat().st_mtime_ns) for name in FILES}


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def openssl_style_sha256(path: Path) -> str:
    return ":".join(f"{byte:02X}" for byte in load(path).fingerprint(hashes.SHA256()))


def field(section: str, name: str) -> str:
    match = re.search(rf"^  {name}: +(.*)$", section, re.M)
    assert match, f"no {name!r} line in:\n{section}"
    return match.group(1)


# -- create ------------------------------------------------------------------------------------

def test_create_writes_the_ca_and_a_localhost_certificate_with_private_keys_0600(tmp_path):
    directory = tmp_path / "certs"
    out = ok(certs("create", "--certs-dir", directory, cwd=tmp_path))
    for name in FILES:
        assert (directory / name).is_file()
        assert str(directory / name) in out
    assert (directory / CA_KEY).stat().st_mode & 0o777 == 0o600
    assert (directory / LEAF_KEY).stat().st_mode & 0o777 == 0o600
    assert "Development CA: created" in out
    assert "Server certificate: created" in out
    assert f"curl --cacert {directory / CA} https://localhost:8443/" in out
    leaf = load(directory / LEAF)
    leaf.verify_directly_issued_by(load(directory / CA))
    assert sans(leaf) == {"localhost", "127.0.0.1", "::1"}


def test_create_with_a_relative_dir_prints_absolute_paths(tmp_path):
    out = ok(certs("create", "--certs-dir", "rel", cwd=tmp_path))
    assert str(tmp_path / "rel" / CA) in out
    assert (tmp_path / "rel" / CA).is_file()


def test_create_again_reuses_every_file_unchanged(tmp_path):
    directory = tmp_path / "certs"
    ok(certs("create", "--certs-dir", directory, cwd=tmp_path))
    before = snapshot(directory)
    out = ok(certs("create", "--certs-dir", directory, cwd=tmp_path))
    assert snapshot(directory) == before
    assert "Development CA: reused" in out
    assert "Server certificate: reused" in out
    assert "created" not in out and "renewed" not in out


def test_create_with_extra_names_renews_only_the_leaf_and_keeps_earlier_names(tmp_path):
    directory = tmp_path / "certs"
    ok(certs("create", "--certs-dir", directory, cwd=tmp_path))
    ca_before = (directory / CA).read_bytes(), (directory / CA_KEY).read_bytes()
    leaf_before = load(directory / LEAF)

    out = ok(certs("create", "--certs-dir", directory, "app.test", cwd=tmp_path))
    assert "Development CA: reused" in out
    assert "Server certificate: renewed (to add app.test)" in out
    leaf = load(directory / LEAF)
    assert leaf.serial_number != leaf_before.serial_number
    assert sans(leaf) == {"localhost", "127.0.0.1", "::1", "app.test"}
    assert ((directory / CA).read_bytes(), (directory / CA_KEY).read_bytes()) == ca_before
    leaf.verify_directly_issued_by(load(directory / CA))

    # A second extra name must not drop the first one.
    out = ok(certs("create", "--certs-dir", directory, "10.9.8.7", cwd=tmp_path))
    assert "renewed (to add 10.9.8.7)" in out
    assert sans(load(directory / LEAF)) == {"localhost", "127.0.0.1", "::1", "app.test", "10.9.8.7"}
    assert "names:        localhost, 127.0.0.1, ::1, app.test, 10.9.8.7" in out
    assert (directory / CA).read_bytes() == ca_before[0]


# -- show --------------------------------------------------------------------------------------

def test_show_prints_fingerprints_names_and_expiry_matching_the_files_and_changes_nothing(tmp_path):
    directory = tmp_path / "certs"
    ok(certs("create", "--certs-dir", directory, "app.test", "fe80::1", cwd=tmp_path))
    before = snapshot(directory)
    out = ok(certs("show", "--certs-dir", directory, cwd=tmp_path))
    assert snapshot(directory) == before

    _, ca_section, leaf_section = out.split("\n\n")
    assert ca_section.startswith(f"Development CA: {directory / CA}\n")
    assert leaf_section.startswith(f"Server certificate: {directory / LEAF}\n")
    assert field(ca_section, "SHA-256") == openssl_style_sha256(directory / CA)
    assert field(leaf_section, "SHA-256") == openssl_style_sha256(directory / LEAF)
    assert field(ca_section, "SHA-256") != field(leaf_section, "SHA-256")
    assert "CN=Plexicorn development CA" in field(ca_section, "subject")
    assert field(leaf_section, "subject") == "CN=localhost"
    assert field(leaf_section, "names") == "localhost, 127.0.0.1, ::1, app.test, fe80::1"
    assert field(ca_section, "private key") == str(directory / CA_KEY)
    assert field(leaf_section, "private key") == str(directory / LEAF_KEY)

    ca_days = int(re.fullmatch(r".* UTC \((\d+) days left\)", field(ca_section, "not after")).group(1))
    leaf_days = int(re.fullmatch(r".* UTC \((\d+) days left\)", field(leaf_section, "not after")).group(1))
    assert 3640 <= ca_days <= 3650
    assert 390 <= leaf_days < 398
    expected_end = load(directory / LEAF).not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    assert field(leaf_section, "not after").startswith(expected_end)
    assert field(leaf_section, "issued by") == "this CA"
    renewal = field(leaf_section, "renewal")
    assert renewal.startswith("not due") and "--dev-cert renews it automatically" in renewal


def test_show_says_a_leaf_expiring_within_30_days_is_due_for_renewal(tmp_path):
    directory = tmp_path / "certs"
    # Issued 380 days ago: about 17 days left.
    ensure_dev_certificate(directory, now=datetime.now(timezone.utc) - timedelta(days=380))
    before = snapshot(directory)
    out = ok(certs("show", "--certs-dir", directory, cwd=tmp_path))
    assert snapshot(directory) == before
    leaf_section = out.split("\n\n")[2]
    assert re.search(r"\((1[5-8]) days left\)", field(leaf_section, "not after"))
    renewal = field(leaf_section, "renewal")
    assert renewal.startswith("due (expires within 30 days)")
    assert "--dev-cert" in renewal and "renews it automatically" in renewal
    assert "renewal" not in out.split("\n\n")[1]  # the CA is not due


def test_show_without_certificates_is_one_error_line_and_creates_nothing(tmp_path):
    directory = tmp_path / "nothing-here"
    line = assert_one_error_line(certs("show", "--certs-dir", directory, cwd=tmp_path))
    assert line == f"plexicorn: error: no development certificates in {directory} (run: plexicorn certs create)"
    assert not directory.exists()


# -- trust-help --------------------------------------------------------------------------------

PLATFORM_TOOLS = {
    "linux": ["update-ca-certificates", "/usr/local/share/ca-certificates/plexicorn-dev-ca.crt",
              "/etc/pki/ca-trust/source/anchors", "update-ca-trust", "trust anchor --store",
              "certutil -d sql:$HOME/.pki/nssdb -A -t C,,", "sql:$HOME/.mozilla/firefox/<profile>"],
    "macos": ["security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain",
              "security remove-trusted-cert"],
    "windows": ["certutil -addstore -f ROOT", "certutil -delstore ROOT"],
}


@pytest.mark.parametrize("platform", ["linux", "macos", "windows", "all"])
def test_trust_help_names_the_absolute_ca_path_and_the_platforms_tools(tmp_path, platform):
    ok(certs("create", "--certs-dir", "certs", cwd=tmp_path))
    ca_path = str(tmp_path / "certs" / CA)  # given relative, printed absolute
    out = ok(certs("trust-help", "--certs-dir", "certs", "--platform", platform, cwd=tmp_path))
    wanted = [*PLATFORM_TOOLS] if platform == "all" else [platform]
    for name, tools in PLATFORM_TOOLS.items():
        for tool in tools:
            assert (tool in out) == (name in wanted), (name, tool)
    assert openssl_style_sha256(tmp_path / "certs" / CA) in out
    for text in ("Firefox", "Chrome", "security.enterprise_roots.enabled" if platform != "linux" else "Authorities",
                 f"--cacert {ca_path}" if platform != "windows" else f'--cacert "{ca_path}"',
                 "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "To remove it again"):
        assert text in out
    # Every command that installs the CA names the file itself, not a placeholder.
    install_lines = [line for line in out.splitlines()
                     if re.search(r"sudo cp |trust anchor --store|add-trusted-cert|-addstore| -A ", line)]
    assert len(install_lines) >= len(wanted)
    for line in install_lines:
        assert ca_path in line, line


def test_trust_help_before_create_says_to_run_create_first(tmp_path):
    directory = tmp_path / "certs"
    out = ok(certs("trust-help", "--certs-dir", directory, "--platform", "linux", cwd=tmp_path))
    assert out.startswith(f"There is no development CA in {directory} yet: run `plexicorn certs create")
    assert f"sudo cp {directory / CA} /usr/local/share/ca-certificates/plexicorn-dev-ca.crt" in out
    assert not directory.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks the Linux default")
def test_trust_help_defaults_to_this_machines_platform(tmp_path):
    out = ok(certs("trust-help", "--certs-dir", tmp_path, cwd=tmp_path))
    assert "update-ca-certificates" in out
    assert "add-trusted-cert" not in out and "-addstore" not in out


# -- mistakes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'", id="unknown-sub-command"),
    pytest.param([], "the following arguments are required: COMMAND", id="no-sub-command"),
    pytest.param(["trust-help", "--platform", "beos"], "argument --platform: invalid choice: 'beos'", id="bad-platform"),
    pytest.param(["create", "--certs-dir", "certs", "bad_name!"],
                 "invalid host name for the development certificate: 'bad_name!'", id="invalid-name"),
    pytest.param(["create", "--certs-dir", "a-file/certs"], "cannot write development certificate in", id="unwritable-dir"),
    pytest.param(["create", "--certs-dir", "a-file"], "is not a directory", id="dir-is-a-file"),
    pytest.param(["show", "--no-such-flag"], "unrecognized arguments: --no-such-flag", id="unknown-flag"),
])
def test_bad_usage_is_one_error_line_and_exit_status_2(tmp_path, args, expected):
    # A regular file stands in for an unwritable directory: the tests may run as root.
    (tmp_path / "a-file").write_text("not a directory\n")
    line = assert_one_error_line(certs(*args, cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "certs").exists()


def test_help_points_to_the_certs_commands(tmp_path):
    main_help = ok(subprocess.run([*MODULE_COMMAND, "--help"], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=TIMEOUT))
    assert "plexicorn certs" in main_help
    certs_help = ok(certs("--help", cwd=tmp_path))
    for command in ("create", "show", "trust-help"):
        assert command in certs_help


# -- end to end: --dev-cert serves what `certs create` made ------------------------------------

@pytest.fixture
def server_processes():  # type: ignore[no-untyped-def]
    processes: list[Plexicorn] = []
    yield processes
    for process in processes:
        process.kill()


def test_dev_cert_serves_the_certificate_certs_create_made(tmp_path, server_processes):
    directory = tmp_path / "certs"
    ok(certs("create", "--certs-dir", directory, "app.test", cwd=tmp_path))
    before = snapshot(directory)

    port = free_port()
    process = Plexicorn(["good:app", "--app-dir", str(APPS), "--bind", f"127.0.0.1:{port}",
                         "--dev-cert", "--certs-dir", str(directory)],
                        cwd=tmp_path, env=None, command=MODULE_COMMAND)
    server_processes.append(process)
    assert process.wait_listening() == port
    assert "Created" not in process.stderr.text and "Issued" not in process.stderr.text
    assert snapshot(directory) == before  # reused, not rewritten

    # Only the created CA is trusted (no -k): the handshake succeeds only if the served leaf chains to
    # it, and the extra name verifies only if the served leaf is the one `create` wrote.
    for url, resolve in ((f"https://localhost:{port}/hello", []),
                         (f"https://app.test:{port}/hello", ["--resolve", f"app.test:{port}:127.0.0.1"])):
        result = curl("--cacert", str(directory / CA), "--http2", *resolve, url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "Hello over HTTP/2"
    assert process.stop() == 0
