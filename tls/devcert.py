"""Local development certificates: a long-lived private CA and a short leaf.

The CA is created once so the user trusts it once; the leaf is reissued
from it whenever it nears expiry or no longer covers the requested names.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .context import TLSConfigError

__all__ = ["DevCertificate", "ensure_dev_certificate", "trust_hint"]

CA_CERT_NAME = "plexicorn-dev-ca.pem"
CA_KEY_NAME = "plexicorn-dev-ca.key"
LEAF_CERT_NAME = "localhost.pem"
LEAF_KEY_NAME = "localhost.key"

_BACKDATE = timedelta(hours=1)  # tolerate small clock skew between peers
_CA_LIFETIME = timedelta(days=3650)
# Browsers reject server certificates valid for 398 days or more.
_LEAF_LIFETIME = timedelta(days=397)
RENEW_BEFORE = timedelta(days=30)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")

# Letters, digits, hyphens and dots, with an optional leading wildcard label.
_DNS_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_Name = str | ipaddress.IPv4Address | ipaddress.IPv6Address
_Loaded = tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]


@dataclass(frozen=True)
class DevCertificate:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    ca_created: bool
    leaf_created: bool  # created or renewed by this call


def _parse_name(name: str) -> _Name:
    name = name.strip()
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    try:
        # SAN dNSName must be ASCII: store internationalised names as A-labels.
        # A trailing dot (fully qualified form) never appears in a SAN.
        ascii_name = name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_name = ""
    if not _DNS_NAME.fullmatch(ascii_name):
        raise TLSConfigError(f"invalid host name for the development certificate: {name!r}")
    return ascii_name


def _san_entry(name: _Name) -> x509.GeneralName:
    if isinstance(name, str):
        return x509.DNSName(name)
    return x509.IPAddress(name)


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def leaf_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate covers, in its own order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(entry.value) for entry in san if isinstance(entry, (x509.DNSName, x509.IPAddress))]


def _load(cert_path: Path, key_path: Path) -> _Loaded | None:
    """The certificate and its matching key, or None if missing or unusable."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except FileNotFoundError:
        return None
    except OSError as exc:
        # Unreadable but present: do not silently overwrite what may be a
        # CA the user already trusts.
        raise TLSConfigError(f"cannot read '{exc.filename}': {exc.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if _spki(cert.public_key()) != _spki(key.public_key()):
        return None  # e.g. a crash between writing the key and the cert
    return cert, key  # type: ignore[return-value]


def _valid_until_horizon(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc > now + RENEW_BEFORE


def _ca_usable(cert: x509.Certificate, now: datetime) -> bool:
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
    return is_ca and _valid_until_horizon(cert, now)


def _leaf_usable(
    leaf: x509.Certificate, ca: x509.Certificate, names: list[_Name], now: datetime
) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    present: set[_Name] = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    present.update(ip for ip in san.get_values_for_type(x509.IPAddress)
                   if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)))
    return set(names) <= present and _valid_until_horizon(leaf, now)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Write a sibling temp file, then rename over the target: readers see
    # the old or the new file, never half of one. The key mode is set at
    # creation so the secret is never readable by others, even briefly.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)  # exact mode regardless of umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save(
    cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes, cert_path: Path, key_path: Path
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: if we die before the cert is written, the pair mismatches
    # and the next call regenerates it.
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _make_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # The host name tells apart CAs from several machines in a trust store.
    cn = f"Plexicorn development CA ({socket.gethostname()})"[:64]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plexicorn"),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True,
        crl_sign=True, encipher_only=False, decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca: _Loaded, names: list[_Name], now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        ca_public = ca_cert.public_key()  # a reused CA from elsewhere may lack an SKI
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_public  # type: ignore[arg-type]
        )
    not_before = now - _BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        # Measured from the backdated start so the total stays under 398 days.
        .not_valid_after(not_before + _LEAF_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([_san_entry(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_dev_certificate(
    certs_dir: str | os.PathLike[str],
    extra_names: Sequence[str] = (),
    *,
    now: datetime | None = None,
) -> DevCertificate:
    """Create or reuse the development CA and a localhost leaf it signed.

    Nothing is rewritten while both are valid for 30 more days and the leaf
    covers localhost, 127.0.0.1, ::1 and `extra_names`. `now` lets tests
    simulate time. Raises TLSConfigError on file-system problems.
    """
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    directory = Path(certs_dir)
    paths = DevCertificate(
        ca_cert=directory / CA_CERT_NAME,
        ca_key=directory / CA_KEY_NAME,
        cert=directory / LEAF_CERT_NAME,
        key=directory / LEAF_KEY_NAME,
        ca_created=False,
        leaf_created=False,
    )
    try:
        # A renewed leaf keeps the names the current one covers (added by `plexicorn certs create`).
        current = _load(paths.cert, paths.key) if directory.is_dir() else None
        names: list[_Name] = []
        for raw in (*DEFAULT_NAMES, *(leaf_names(current[0]) if current else ()), *extra_names):
            parsed = _parse_name(raw)
            if parsed not in names:
                names.append(parsed)

        if not directory.is_dir():
            directory.mkdir(parents=True)
            os.chmod(directory, 0o700)  # holds private keys; mkdir's mode obeys umask

        ca = _load(paths.ca_cert, paths.ca_key)
        ca_created = ca is None or not _ca_usable(ca[0], now)
        if ca_created:
            ca = _make_ca(now)
            _save(*ca, paths.ca_cert, paths.ca_key)
        assert ca is not None

        leaf = None if ca_created else current
        leaf_created = leaf is None or not _leaf_usable(leaf[0], ca[0], names, now)
        if leaf_created:
            _save(*_make_leaf(ca, names, now), paths.cert, paths.key)
    except OSError as exc:
        target = exc.filename or directory
        raise TLSConfigError(
            f"cannot write development certificate in '{directory}': "
            f"{exc.strerror or exc} ('{target}')"
        ) from None
    return DevCertificate(
        paths.ca_cert, paths.ca_key, paths.cert, paths.key, ca_created, leaf_created
    )


def trust_hint(ca_cert: Path, *, url: str = "https://localhost:8443/") -> str:
    """One line telling the user how to make clients trust the dev CA."""
    return (
        f"trust it with: curl --cacert {shlex.quote(str(ca_cert))} {url} "
        "(or add it to your system/browser trust store)"
    )
