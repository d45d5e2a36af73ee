"""Server-side TLS contexts with HTTP/2-safe defaults and one-line errors."""

from __future__ import annotations

import os
import ssl
import weakref
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["DEFAULT_TLS12_CIPHERS", "TLSConfigError", "create_server_context", "served_certificate_pem"]

# RFC 9113 §9.2.2: HTTP/2 over TLS 1.2 needs ephemeral key exchange and an
# AEAD cipher; anything else may be answered with INADEQUATE_SECURITY.
# (TLS 1.3 suites are not affected by this string and are all adequate.)
DEFAULT_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
# Python cannot read back a context's own certificate, so remember the leaf
# PEM of each context built here (weakly: contexts come and go on reload).
_LEAF_PEM: weakref.WeakKeyDictionary[ssl.SSLContext, str] = weakref.WeakKeyDictionary()
_TIME_FORMAT = "%Y-%m-%d %H:%M UTC"


class TLSConfigError(Exception):
    """A TLS setting the server cannot use; str() is one line for the user."""


def _fail(message: str) -> NoReturn:
    # Collapse whitespace (OpenSSL reasons may span lines) and drop the
    # chained low-level exception: the one line is the whole story.
    raise TLSConfigError(" ".join(message.split())) from None


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        _fail(f"cannot read {what} '{os.fspath(path)}': {exc.strerror or exc}")


def _load_key(data: bytes, name: str, password: str | None) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, None)
    except TypeError:
        pass  # encrypted: handled below
    except ValueError:
        _fail(f"private key '{name}' is not a PEM private key")
    except UnsupportedAlgorithm as exc:
        _fail(f"cannot load private key '{name}': {exc}")
    if password is None:
        _fail(f"private key '{name}' is encrypted: give its password")
    try:
        return serialization.load_pem_private_key(data, password.encode())
    except (TypeError, ValueError):
        _fail(f"cannot decrypt private key '{name}': wrong password")


def _check_files(certfile: str, keyfile: str, password: str | None) -> x509.Certificate:
    """Catch the usual mistakes with precise messages before OpenSSL sees them."""
    cert_data = _read(certfile, "certificate file")
    try:
        leaf = x509.load_pem_x509_certificates(cert_data)[0]
    except ValueError:
        _fail(f"certificate file '{certfile}' does not contain a PEM certificate")
    now = datetime.now(timezone.utc)
    # Only the leaf: chains may legitimately carry an expired cross-signed
    # intermediate that clients skip while building their own path.
    if leaf.not_valid_after_utc <= now:
        when = leaf.not_valid_after_utc.strftime(_TIME_FORMAT)
        _fail(f"certificate '{certfile}' expired on {when}")
    if leaf.not_valid_before_utc > now:
        when = leaf.not_valid_before_utc.strftime(_TIME_FORMAT)
        _fail(f"certificate '{certfile}' is not valid before {when}")

    key_data = cert_data if keyfile == certfile else _read(keyfile, "private key file")
    key = _load_key(key_data, keyfile, password)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        _fail(f"private key '{keyfile}' does not match certificate '{certfile}'")
    return leaf


def _verify_mode(client_cert: str, ca_certs: str | os.PathLike[str] | None) -> ssl.VerifyMode:
    mode = _VERIFY_MODES.get(client_cert)
    if mode is None:
        _fail(f"client_cert must be one of {', '.join(_VERIFY_MODES)}, not {client_cert!r}")
    if mode != ssl.CERT_NONE and ca_certs is None:
        _fail(f"client_cert={client_cert!r} needs ca_certs: the CA file that issues client certificates")
    return mode


def _load_client_cas(ctx: ssl.SSLContext, ca_certs: str) -> None:
    # Parsed here first: OpenSSL silently skips what it does not recognise
    # and its errors do not name the file.
    try:
        x509.load_pem_x509_certificates(_read(ca_certs, "CA certificates file"))
    except ValueError:
        _fail(f"CA certificates file '{ca_certs}' does not contain a PEM certificate")
    try:
        ctx.load_verify_locations(cafile=ca_certs)
    except (ssl.SSLError, OSError) as exc:
        _fail(f"cannot load CA certificates file '{ca_certs}': {getattr(exc, 'strerror', None) or exc}")


def create_server_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    *,
    password: str | None = None,
    alpn_protocols: Sequence[str] = ("h2", "http/1.1"),
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    ciphers: str = DEFAULT_TLS12_CIPHERS,
    ca_certs: str | os.PathLike[str] | None = None,
    client_cert: str = "none",
) -> ssl.SSLContext:
    """Build a server SSLContext from a PEM chain file (leaf first) and key.

    `keyfile` defaults to `certfile` (key stored with the chain). `ciphers`
    is an OpenSSL cipher string for TLS 1.2. `client_cert` ("none",
    "optional", "required") asks clients for a certificate issued by one of
    the CAs in `ca_certs`. Raises TLSConfigError with a one-line message
    naming the offending file or setting.
    """
    verify_mode = _verify_mode(client_cert, ca_certs)
    cert_name = os.fspath(certfile)
    key_name = os.fspath(keyfile) if keyfile is not None else cert_name
    leaf = _check_files(cert_name, key_name, password)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = min_version
    except (ValueError, ssl.SSLError) as exc:
        _fail(f"unsupported TLS settings (min_version={min_version.name}): {exc}")
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        _fail(f"invalid cipher string {ciphers!r}: {exc.args[0] if exc.args else exc}")
    ctx.options |= (
        ssl.OP_NO_COMPRESSION  # CRIME
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | getattr(ssl, "OP_NO_RENEGOTIATION", 0)  # forbidden by RFC 9113 §9.2.1
    )
    ctx.set_alpn_protocols(list(alpn_protocols))
    if ca_certs is not None:
        _load_client_cas(ctx, os.fspath(ca_certs))
    ctx.verify_mode = verify_mode

    def _password() -> str:
        # A callback (never None) so OpenSSL cannot fall back to prompting
        # on the terminal and hang a server started without a tty.
        if password is None:
            _fail(f"private key '{key_name}' is encrypted: give its password")
        return password

    try:
        ctx.load_cert_chain(cert_name, key_name, password=_password)
    except ssl.SSLError as exc:
        reason = f"{exc.reason or ''} {exc}"
        if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in reason:
            _fail(f"private key '{key_name}' does not match certificate '{cert_name}'")
        if "BAD_DECRYPT" in reason or "bad decrypt" in reason:
            _fail(f"cannot decrypt private key '{key_name}': wrong password")
        _fail(f"cannot load certificate '{cert_name}' with key '{key_name}': {exc.reason or exc}")
    except OSError as exc:
        _fail(f"cannot load certificate '{cert_name}': {exc.strerror or exc}")
    _LEAF_PEM[ctx] = leaf.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return ctx


def served_certificate_pem(ctx: ssl.SSLContext) -> str | None:
    """PEM of the leaf certificate `ctx` serves, if create_server_context built it."""
    return _LEAF_PEM.get(ctx)
