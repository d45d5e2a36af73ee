"""All TLS settings of one server: SNI certificates, client certificates, reload.

The listener wraps every connection with one long-lived SSLContext whose SNI
callback moves the connection to the context of the name the client asked
for. Reloading swaps the table those contexts come from, so new handshakes
see new certificates while established connections keep theirs.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from .context import (
    DEFAULT_TLS12_CIPHERS,
    TLSConfigError,
    _fail,
    create_server_context,
    served_certificate_pem,
)
from .devcert import _DNS_NAME

__all__ = ["CertificatePair", "ServerTLS", "h2_adequate"]

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# Key exchanges that are ephemeral (forward secret), as OpenSSL names them.
_EPHEMERAL_KEX = {"kx-ecdhe", "kx-dhe", "kx-ecdhe-psk", "kx-dhe-psk"}
_CERTBOT_CERT = "fullchain.pem"
_CERTBOT_KEY = "privkey.pem"

_Stat = tuple[int, int, int] | None
_Listing = tuple[tuple[str, bool], ...]  # (entry name, is a directory), sorted


@dataclass(frozen=True)
class CertificatePair:
    """A PEM chain file (leaf first) and its key file (None: key inside certfile)."""

    certfile: str
    keyfile: str | None = None


@dataclass(frozen=True)
class _Contexts:
    by_name: Mapping[str, ssl.SSLContext]
    default: ssl.SSLContext

    def for_name(self, server_name: str | None) -> ssl.SSLContext:
        if not server_name:
            return self.default
        name = server_name.rstrip(".").lower()
        found = self.by_name.get(name)
        if found is None:
            # A wildcard covers exactly one label: "*.example.com" matches
            # "a.example.com", not "example.com" nor "a.b.example.com".
            _, dot, parent = name.partition(".")
            found = self.by_name.get("*." + parent) if dot and parent else None
        return found or self.default


def _normalize_name(name: str, origin: str) -> str:
    """Lower-case A-label form, the form Python hands to the SNI callback."""
    wildcard = name.startswith("*.")
    rest = name[2:] if wildcard else name
    try:
        ascii_name = rest.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_name = ""
    if not _DNS_NAME.fullmatch(ascii_name):
        _fail(f"invalid SNI name {name!r} ({origin})")
    return "*." + ascii_name if wildcard else ascii_name


def _list_sni_dir(path: str) -> _Listing:
    # Hidden entries are skipped: editors and atomic writers use them for
    # temporary files, and certbot's live dir has none we need.
    with os.scandir(path) as entries:
        return tuple(sorted((e.name, e.is_dir()) for e in entries if not e.name.startswith(".")))


def _sni_entries(path: str, listing: _Listing) -> list[tuple[str, CertificatePair]]:
    """(entry name, pair) for each certificate in an SNI directory listing."""
    files = {name for name, is_dir in listing if not is_dir}
    found = []
    for entry, is_dir in listing:
        if is_dir:  # certbot: <name>/fullchain.pem + <name>/privkey.pem
            pair = CertificatePair(
                os.path.join(path, entry, _CERTBOT_CERT), os.path.join(path, entry, _CERTBOT_KEY)
            )
            found.append((entry, pair))
        elif entry.endswith(".pem"):  # <name>.pem + <name>.key, or the key inside the .pem
            stem = entry[: -len(".pem")]
            key = stem + ".key"
            keyfile = os.path.join(path, key) if key in files else None
            found.append((stem, CertificatePair(os.path.join(path, entry), keyfile)))
        # Anything else (keys, certbot's README) is not an entry of its own.
    return found


def _stat(path: str) -> _Stat:
    try:
        st = os.stat(path)  # follows symlinks: certbot renews by re-pointing them
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@functools.cache
def _cipher_table() -> dict[str, dict[str, Any]]:
    """Every cipher the linked OpenSSL knows, by name (for ids and properties)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return {c["name"]: dict(c) for c in ctx.get_ciphers()}


def h2_adequate(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bool:
    """Whether the negotiated TLS parameters are acceptable for HTTP/2 (RFC 9113 §9.2)."""
    version = ssl_object.version()
    if version == "TLSv1.3":
        return True  # every TLS 1.3 suite is ephemeral and AEAD
    cipher = ssl_object.cipher()
    if version != "TLSv1.2" or cipher is None:
        return False
    info = _cipher_table().get(cipher[0])
    return bool(info and info.get("aead") and info.get("kea") in _EPHEMERAL_KEX)


class ServerTLS:
    """Every TLS setting of one server and the contexts built from them; reloadable.

    Certificates come from `by_name` (SNI name -> pair; a name may be a
    one-label wildcard "*.example.com") and/or `sni_dir`, a directory where
    each entry serves the name it is called after:

    - ``<name>.pem`` (chain, leaf first) with ``<name>.key`` beside it, or
      the key inside the ``.pem`` when there is no ``.key``;
    - a folder ``<name>/`` holding ``fullchain.pem`` and ``privkey.pem``
      (certbot's layout, so ``/etc/letsencrypt/live`` works as is).

    A leading ``_.`` in a file or folder name stands for ``*.``
    (``_.example.com.pem`` serves ``*.example.com``). Hidden entries, ``.key``
    files and other files (certbot's README) are ignored. A name given
    twice is an error.

    `default` serves clients that send no SNI or an unknown name; without
    it, the first `by_name` name (sorted) is the default, else the first
    `sni_dir` name. Every context gets the same settings (password, ALPN,
    versions, ciphers, client certificates): OpenSSL keeps some of them
    from the context a connection started on, so they must not differ.
    """

    def __init__(
        self,
        *,
        default: CertificatePair | None = None,
        by_name: Mapping[str, CertificatePair] = {},  # noqa: B006 (never mutated)
        sni_dir: str | None = None,
        password: str | None = None,
        alpn_protocols: Sequence[str] = ("h2", "http/1.1"),
        min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        ciphers: str = DEFAULT_TLS12_CIPHERS,
        ca_certs: str | None = None,
        client_cert: str = "none",
    ) -> None:
        self._default = default
        self._by_name: dict[str, CertificatePair] = {}
        for name, pair in by_name.items():
            normalized = _normalize_name(name, "a configured certificate name")
            if normalized in self._by_name:
                _fail(f"SNI name {normalized!r} is configured twice")
            self._by_name[normalized] = pair
        self._sni_dir = os.fspath(sni_dir) if sni_dir is not None else None
        self._settings: dict[str, Any] = dict(
            password=password,
            alpn_protocols=tuple(alpn_protocols),
            min_version=min_version,
            ciphers=ciphers,
            ca_certs=ca_certs,
            client_cert=client_cert,
        )
        self._seen: object = None
        self._current = self._load()
        # The listener's context for good: every handshake starts on it and
        # its SNI callback moves the connection to the current context. It
        # also fixes what OpenSSL does not take from the context switched
        # to (verify mode, protocol versions, options), hence equal settings.
        self.context = self._current.default
        self.context.sni_callback = self._select

    # -- handshake path: keep it tiny, it runs for every connection --------

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        ssl_object.context = self._current.for_name(server_name)

    # -- loading ------------------------------------------------------------

    def _fingerprint(self, listing: _Listing | None) -> object:
        files: list[str] = []
        pairs = [self._default, *self._by_name.values()]
        if self._sni_dir is not None and listing is not None:
            pairs += [pair for _, pair in _sni_entries(self._sni_dir, listing)]
        for pair in pairs:
            if pair is not None:
                files += [pair.certfile] if pair.keyfile is None else [pair.certfile, pair.keyfile]
        if self._settings["ca_certs"] is not None:
            files.append(self._settings["ca_certs"])
        return listing, tuple((f, _stat(f)) for f in files)

    def _scan(self) -> tuple[_Listing | None, OSError | None]:
        if self._sni_dir is None:
            return None, None
        try:
            return _list_sni_dir(self._sni_dir), None
        except OSError as exc:
            return None, exc

    def _load(self) -> _Contexts:
        # Fingerprint first: a file changing while we read it changes the
        # fingerprint again, so the next check retries.
        listing, error = self._scan()
        self._seen = self._fingerprint(listing)
        pairs = dict(self._by_name)
        from_dir: dict[str, CertificatePair] = {}
        if self._sni_dir is not None:
            if error is not None:
                _fail(f"cannot read SNI directory '{self._sni_dir}': {error.strerror or error}")
            for entry, pair in _sni_entries(self._sni_dir, listing or ()):
                origin = f"from '{os.path.join(self._sni_dir, entry)}'"
                name = _normalize_name("*." + entry[2:] if entry.startswith("_.") else entry, origin)
                if name in pairs or name in from_dir:
                    _fail(f"SNI name {name!r} is configured twice ({origin})")
                from_dir[name] = pair
            if not from_dir:
                _fail(f"SNI directory '{self._sni_dir}' holds no certificates")
        default = self._default
        if default is None:
            source = pairs or from_dir
            if not source:
                _fail("no certificate configured: give a default certificate, SNI names or an SNI directory")
            default = source[min(source)]
        pairs.update(from_dir)

        built: dict[CertificatePair, ssl.SSLContext] = {}

        def build(pair: CertificatePair) -> ssl.SSLContext:
            if pair not in built:
                built[pair] = create_server_context(pair.certfile, pair.keyfile, **self._settings)
            return built[pair]

        by_name = {name: build(pair) for name, pair in sorted(pairs.items())}
        return _Contexts(by_name, build(default))

    def reload(self) -> None:
        """Rebuild every context from the files, all or nothing.

        On error raise TLSConfigError and keep serving the previous
        contexts. New handshakes use the new ones; established connections
        are untouched.
        """
        self._current = self._load()

    def files_changed(self) -> bool:
        """Whether any file involved changed since the last load attempt (stat only)."""
        return self._fingerprint(self._scan()[0]) != self._seen

    @property
    def names(self) -> list[str]:
        """The SNI names served, sorted."""
        return sorted(self._current.by_name)

    # -- per connection -------------------------------------------------------

    def connection_info(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
        """The ASGI "tls" extension for a connection whose handshake is done."""
        chain: list[str] = []
        name = None
        get_verified_chain = getattr(ssl_object, "get_verified_chain", None)  # Python >= 3.13
        if get_verified_chain is not None:
            ders = list(get_verified_chain())
        else:
            leaf = ssl_object.getpeercert(binary_form=True)
            ders = [leaf] if leaf else []
        if ders:
            chain = [ssl.DER_cert_to_PEM_cert(der) for der in ders]
            name = x509.load_der_x509_certificate(ders[0]).subject.rfc4514_string()
        version = ssl_object.version()
        cipher = ssl_object.cipher()
        info = _cipher_table().get(cipher[0]) if cipher else None
        return {
            "server_cert": served_certificate_pem(ssl_object.context),
            "client_cert_chain": chain,
            "client_cert_name": name,
            # Python's ssl fails the handshake on a certificate it cannot
            # verify, so an established connection never has an error.
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(version) if version else None,
            "cipher_suite": info["id"] & 0xFFFF if info else None,
        }
