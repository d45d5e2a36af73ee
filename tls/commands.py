"""`plexicorn certs ...`: create, inspect and trust the development certificates.

The files are the ones `--dev-cert` uses (same directory, same names, same
renewal rules), so `certs create` followed by `--dev-cert` serves exactly
what `create` wrote. A module longer than 400 lines: three subcommands that share their
argument parsing, output and error handling.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from ..config import Config
from .context import TLSConfigError
from .devcert import (
    DEFAULT_NAMES,
    RENEW_BEFORE,
    CA_CERT_NAME,
    CA_KEY_NAME,
    LEAF_CERT_NAME,
    LEAF_KEY_NAME,
    ensure_dev_certificate,
    leaf_names,
    trust_hint,
)

__all__ = ["certs_main"]

EXIT_USAGE = 2
PLATFORMS = ("linux", "macos", "windows")
# The nickname under which NSS databases (Firefox, Chrome on Linux) store the CA.
NSS_NICKNAME = "Plexicorn dev CA"
_DATE_FORMAT = "%Y-%m-%d %H:%M UTC"
_DEFAULT_CERTS_DIR: str = Config.certs_dir  # the --dev-cert default: both must find the same files


class UsageError(Exception):
    """A mistake the user can fix; str() is the one line they see."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line like the main command's, naming the sub-command's help.
        self.exit(EXIT_USAGE, f"plexicorn: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="plexicorn certs",
        description="Manage the development CA and localhost certificate that --dev-cert serves.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    dir_option = _Parser(add_help=False)
    dir_option.add_argument("--certs-dir", metavar="DIR", default=_DEFAULT_CERTS_DIR,
                            help=f"where the certificates live (default: {_DEFAULT_CERTS_DIR}, as for --dev-cert)")

    create = commands.add_parser(
        "create", parents=[dir_option], help="create or reuse the CA and the localhost certificate",
        description="Create (or reuse) the development CA and a certificate for localhost, 127.0.0.1 "
        "and ::1 plus NAMEs. Names already in the certificate are kept.")
    create.add_argument("names", nargs="*", metavar="NAME", help="extra DNS name or IP address to cover")

    commands.add_parser(
        "show", parents=[dir_option], help="show the certificates: names, fingerprints, expiry",
        description="Show the development CA and certificate. Changes nothing.")

    trust = commands.add_parser(
        "trust-help", parents=[dir_option], help="how to trust (and untrust) the CA",
        description="Print how to make the OS, browsers and tools trust the development CA.")
    trust.add_argument("--platform", choices=(*PLATFORMS, "all"), default=_current_platform(),
                       help="whose instructions to print (default: this machine's)")
    return parser


def certs_main(argv: Sequence[str]) -> int:
    """Run `plexicorn certs ARGV...`; return the exit status (2 for a usage mistake)."""
    try:
        args = _build_parser().parse_args(list(argv))
    except SystemExit as exc:  # --help, or the one-line usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    directory = Path(os.path.abspath(args.certs_dir))
    try:
        if directory.exists() and not directory.is_dir():
            raise UsageError(f"--certs-dir '{directory}' is not a directory")
        if args.command == "create":
            _create(directory, args.names)
        elif args.command == "show":
            _show(directory)
        else:
            _trust_help(directory, args.platform)
    except (UsageError, TLSConfigError) as exc:
        print(f"plexicorn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


# -- reading certificates --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Files:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> _Files:
        return cls(directory / CA_CERT_NAME, directory / CA_KEY_NAME,
                   directory / LEAF_CERT_NAME, directory / LEAF_KEY_NAME)


def _read_cert(path: Path) -> x509.Certificate | None:
    """The certificate, None if the file is missing; UsageError if it is unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read '{path}': {exc.strerror or exc}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise UsageError(f"'{path}' is not a PEM certificate (plexicorn certs create replaces it)") from None


def fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None) -> str:
    """Colon-separated upper-case hex, as `openssl x509 -fingerprint` prints it."""
    return cert.fingerprint(algorithm or hashes.SHA256()).hex(":").upper()


def _days_left(cert: x509.Certificate, now: datetime) -> int:
    return (cert.not_valid_after_utc - now).days


def _renewal_due(cert: x509.Certificate, now: datetime) -> bool:
    # The rule ensure_dev_certificate applies.
    return not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_BEFORE)


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else cert.subject.rfc4514_string()


# -- create ----------------------------------------------------------------------------------------

def _create(directory: Path, requested: Sequence[str]) -> None:
    files = _Files.in_dir(directory)
    old_ca = _existing_cert(files.ca_cert)
    old_leaf = _existing_cert(files.cert)
    # ensure_dev_certificate keeps the names the current leaf covers, so adding one drops none.
    dev = ensure_dev_certificate(directory, requested)
    ca, leaf = _read_cert(dev.ca_cert), _read_cert(dev.cert)
    assert ca is not None and leaf is not None
    now = datetime.now(timezone.utc)

    if not dev.ca_created:
        ca_action = "reused"
    elif old_ca is None:
        ca_action = "created"
    else:
        ca_action = "created a new one (the old one was expiring or unusable: trust the new one)"
    if not dev.leaf_created:
        leaf_action = "reused"
    elif old_leaf is None:
        leaf_action = "created"
    else:
        leaf_action = f"renewed ({_renewal_reason(old_leaf, ca, dev.ca_created, leaf_names(leaf), now)})"

    print(f"Development CA: {ca_action}")
    print(f"  certificate:  {dev.ca_cert}")
    print(f"  private key:  {dev.ca_key}")
    print(f"  valid until:  {_until(ca, now)}")
    print(f"Server certificate: {leaf_action}")
    print(f"  certificate:  {dev.cert}")
    print(f"  private key:  {dev.key}")
    print(f"  names:        {', '.join(leaf_names(leaf))}")
    print(f"  valid until:  {_until(leaf, now)}")
    print(trust_hint(dev.ca_cert))
    print(f"Browsers and the system trust store: plexicorn certs trust-help --certs-dir {_sh(directory)}")


def _existing_cert(path: Path) -> x509.Certificate | None:
    # ensure_dev_certificate replaces an unusable file: here it only counts as "not there".
    try:
        return _read_cert(path)
    except UsageError:
        return None


def _renewal_reason(old: x509.Certificate, ca: x509.Certificate, ca_created: bool,
                    names: list[str], now: datetime) -> str:
    if ca_created:
        return "for the new CA"
    added = [name for name in names if name not in leaf_names(old)]
    if added:
        return "to add " + ", ".join(added)
    if _renewal_due(old, now):
        return (f"it expired or expires within {RENEW_BEFORE.days} days: "
                f"{old.not_valid_after_utc:{_DATE_FORMAT}}")
    return "it was not usable with this CA"


def _until(cert: x509.Certificate, now: datetime) -> str:
    return f"{cert.not_valid_after_utc:{_DATE_FORMAT}} ({_days_left(cert, now)} days left)"


# -- show ------------------------------------------------------------------------------------------

def _show(directory: Path) -> None:
    files = _Files.in_dir(directory)
    ca, leaf = _read_cert(files.ca_cert), _read_cert(files.cert)
    if ca is None and leaf is None:
        raise UsageError(f"no development certificates in {directory} (run: plexicorn certs create)")
    now = datetime.now(timezone.utc)
    print(f"Development certificates in {directory}")

    print()
    print(f"Development CA: {files.ca_cert}")
    if ca is None:
        print("  missing (run: plexicorn certs create)")
    else:
        _print_details(ca, files.ca_key, now)
        if _renewal_due(ca, now):
            print("  renewal:      due: the next --dev-cert start or `plexicorn certs create` makes a new CA,"
                  " which you will have to trust again")

    print()
    print(f"Server certificate: {files.cert}")
    if leaf is None:
        print("  missing (run: plexicorn certs create, or start with --dev-cert)")
        return
    print(f"  names:        {', '.join(leaf_names(leaf)) or '(none)'}")
    _print_details(leaf, files.key, now)
    if ca is not None:
        try:
            leaf.verify_directly_issued_by(ca)
            print("  issued by:    this CA")
        except (ValueError, TypeError, InvalidSignature):
            print("  issued by:    another CA: --dev-cert and `plexicorn certs create` reissue it")
    renew_from = leaf.not_valid_after_utc - RENEW_BEFORE
    if _renewal_due(leaf, now):
        print(f"  renewal:      due (expires within {RENEW_BEFORE.days} days): the next --dev-cert start"
              " or `plexicorn certs create` renews it automatically")
    else:
        print(f"  renewal:      not due; --dev-cert renews it automatically from {renew_from:%Y-%m-%d},"
              f" {RENEW_BEFORE.days} days before it expires")
    if set(leaf_names(leaf)) - set(DEFAULT_NAMES):
        # server.py asks ensure_dev_certificate for the default names only.
        print("  note:         a renewal by --dev-cert covers localhost, 127.0.0.1 and ::1 only;"
              " `plexicorn certs create` keeps the other names")


def _print_details(cert: x509.Certificate, key_path: Path, now: datetime) -> None:
    print(f"  subject:      {cert.subject.rfc4514_string()}")
    print(f"  SHA-256:      {fingerprint(cert)}")
    print(f"  not after:    {_until(cert, now)}")
    print(f"  private key:  {key_path}{_key_note(key_path)}")


def _key_note(path: Path) -> str:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return " (missing)"
    except OSError:
        return ""
    if os.name == "posix" and mode & 0o077:
        return f" (mode {mode:04o}: others can read it, run: chmod 600 {_sh(path)})"
    return ""


# -- trust-help ------------------------------------------------------------------------------------

def _current_platform() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    return "all"


def _sh(path: Path | str) -> str:
    return shlex.quote(str(path))


def _win(path: Path | str) -> str:
    return f'"{path}"'


def _trust_help(directory: Path, platform: str) -> None:
    ca_path = directory / CA_CERT_NAME
    ca = _existing_cert(ca_path)
    if ca is None:
        print(f"There is no development CA in {directory} yet: run "
              f"`plexicorn certs create --certs-dir {_sh(directory)}` first.")
        print("The instructions below name the file it will create.")
        # What _make_ca will call it, so the removal commands still make sense.
        common_name = f"Plexicorn development CA ({socket.gethostname()})"[:64]
        sha1 = None
    else:
        common_name = _common_name(ca)
        sha1 = fingerprint(ca, hashes.SHA1()).replace(":", "")  # noqa: S303 - an identifier, not security
        print(f"Development CA: {ca_path}")
        print(f"  subject: {ca.subject.rfc4514_string()}")
        print(f"  SHA-256: {fingerprint(ca)}")
    print("Trust it only on machines you develop on: anyone with its private key "
          f"({directory / CA_KEY_NAME}) can impersonate any site to this machine.")

    sections = {"linux": _linux, "macos": _macos, "windows": _windows}
    for name in PLATFORMS if platform == "all" else (platform,):
        print()
        print(sections[name](ca_path, common_name, sha1))
    print()
    print(_tools(ca_path, windows=platform == "windows"))


def _linux(ca: Path, common_name: str, sha1: str | None) -> str:
    q = _sh(ca)
    nss = f'-n "{NSS_NICKNAME}"'
    return f"""\
== Linux ==
System trust store (curl, wget, git, Python's ssl with the system store, most command-line tools):
  Debian/Ubuntu:
    sudo cp {q} /usr/local/share/ca-certificates/plexicorn-dev-ca.crt
    sudo update-ca-certificates
  Fedora/RHEL/CentOS:
    sudo cp {q} /etc/pki/ca-trust/source/anchors/plexicorn-dev-ca.pem
    sudo update-ca-trust
  Arch (p11-kit):
    sudo trust anchor --store {q}
Chrome/Chromium: they use their own NSS database on Linux (certutil is in libnss3-tools / nss-tools):
    certutil -d sql:$HOME/.pki/nssdb -A -t C,, {nss} -i {q}
  or Settings > Privacy and security > Security > Manage certificates > Authorities > Import.
Firefox: it has its own store: Settings > Privacy & Security > Certificates > View Certificates >
  Authorities > Import, tick "Trust this CA to identify websites". Or, per profile, with the browser closed:
    certutil -A -d sql:$HOME/.mozilla/firefox/<profile> -t C,, {nss} -i {q}
  (<profile> is the folder ending in .default-release; the Snap build keeps profiles in
  ~/snap/firefox/common/.mozilla/firefox/).
To remove it again:
  Debian/Ubuntu: sudo rm /usr/local/share/ca-certificates/plexicorn-dev-ca.crt && sudo update-ca-certificates --fresh
  Fedora/RHEL:   sudo rm /etc/pki/ca-trust/source/anchors/plexicorn-dev-ca.pem && sudo update-ca-trust
  Arch:          sudo trust anchor --remove {q}
  Chrome:        certutil -d sql:$HOME/.pki/nssdb -D {nss}
  Firefox:       certutil -D -d sql:$HOME/.mozilla/firefox/<profile> {nss}
                 (or delete "{common_name}" under Authorities)"""


def _macos(ca: Path, common_name: str, sha1: str | None) -> str:
    q = _sh(ca)
    delete = (f"sudo security delete-certificate -Z {sha1} /Library/Keychains/System.keychain"
              if sha1 else
              f'sudo security delete-certificate -c "{common_name}" /Library/Keychains/System.keychain')
    return f"""\
== macOS ==
System keychain (Safari, Chrome, Edge, curl, most apps):
    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {q}
Chrome/Edge: use the system keychain: nothing more to do.
Firefox: it has its own store: Settings > Privacy & Security > Certificates > View Certificates >
  Authorities > Import, tick "Trust this CA to identify websites"; or make it use the keychain:
  about:config > security.enterprise_roots.enabled = true.
To remove it again:
    sudo security remove-trusted-cert -d {q}
    {delete}
  Firefox: delete "{common_name}" under Authorities."""


def _windows(ca: Path, common_name: str, sha1: str | None) -> str:
    q = _win(ca)
    cert_id = sha1 or f'"{common_name}"'
    return f"""\
== Windows ==
Windows certificate store (Edge, Chrome, curl.exe, most apps), from an administrator prompt:
    certutil -addstore -f ROOT {q}
  or, for your user only, without administrator rights:
    certutil -user -addstore -f ROOT {q}
Chrome/Edge: use the Windows store: nothing more to do.
Firefox: it has its own store: Settings > Privacy & Security > Certificates > View Certificates >
  Authorities > Import, tick "Trust this CA to identify websites"; or make it use the Windows store:
  about:config > security.enterprise_roots.enabled = true.
To remove it again:
    certutil -delstore ROOT {cert_id}
    certutil -user -delstore ROOT {cert_id}
  Firefox: delete "{common_name}" under Authorities."""


def _tools(ca: Path, *, windows: bool) -> str:
    if windows:
        q = _win(ca)
        env = [f"  $env:SSL_CERT_FILE = {q}        # PowerShell: Python's ssl, httpx",
               f"  $env:REQUESTS_CA_BUNDLE = {q}   # requests (it ignores the OS store)"]
    else:
        q = _sh(ca)
        env = [f"  export SSL_CERT_FILE={q}        # Python's ssl, httpx, OpenSSL-based tools",
               f"  export REQUESTS_CA_BUNDLE={q}   # requests (it uses certifi, not the OS store)"]
    return "\n".join([
        "== curl and Python (no trust store change needed) ==",
        f"  curl --cacert {q} https://localhost:8443/",
        f"  ssl.create_default_context(cafile={str(ca)!r})   # or httpx.Client(verify=that_context)",
        *env,
        "  (these variables replace the default CA list for that process: set them only for local work)",
        "To stop trusting it: unset the variables; delete the files in the certificates directory to make",
        "a new CA next time (which then has to be trusted again).",
    ])

