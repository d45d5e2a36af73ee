"""Every setting of Plexicorn, in one place.

`Config` is the single source of truth: the CLI flags, the keys of a TOML config
file and the programmatic API are all derived from its fields, so a setting can
never exist in one of them and be missing from another. A module longer than 400 lines for
that reason: one field per setting, each with its help text, all in one dataclass.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import math
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .edge.trust import DEFAULT_ALLOW, TrustedPeers
from .runtime.accesslog import check_format


class ConfigError(Exception):
    """A user mistake in the configuration; its message is one line for the user."""


def setting(default: Any, help: str, *, flag: str | None = None, short: str | None = None,
            choices: tuple[str, ...] | None = None, metavar: str | None = None, text: bool = False) -> Any:
    """A Config field with what the CLI, the TOML loader and the docs need to know about it.

    `text`: the flag and the TOML key also take a string (`--workers auto`), checked by Config.
    """
    meta = {"help": help, "flag": flag, "short": short, "choices": choices, "metavar": metavar, "text": text}
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Bind:
    """One listening address: a TCP host and port, a Unix socket path, or an inherited socket
    (`fd`: a file descriptor number, or a systemd socket unit's FileDescriptorName)."""

    host: str | None
    port: int | None
    path: str | None = None
    fd: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.fd is not None:
            return f"fd://{self.fd}"
        if self.path is not None:
            return f"unix:{self.path}"
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_bind(text: str) -> Bind:
    """Parse `HOST:PORT`, `[IPv6]:PORT`, `unix:/path` or `fd://N` (`fd://NAME` for systemd)."""
    if text.startswith("fd://"):
        fd = text[len("fd://"):]
        if not fd or (fd.isdigit() and int(fd) > 65535) or not all(c.isalnum() or c in "._-" for c in fd):
            raise ConfigError(f"invalid --bind {text!r}: expected fd://N (an inherited socket's file "
                              "descriptor) or fd://NAME (a systemd socket's FileDescriptorName)")
        return Bind(host=None, port=None, fd=fd)
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise ConfigError(f"invalid --bind {text!r}: a Unix socket needs a path, e.g. unix:/tmp/app.sock")
        return Bind(host=None, port=None, path=path)
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"invalid --bind {text!r}: expected [IPv6]:PORT, e.g. [::]:8443")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"invalid --bind {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"invalid --bind {text!r}: expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N")
        if ":" in host:
            raise ConfigError(f"invalid --bind {text!r}: put IPv6 addresses in brackets, e.g. [::1]:8443")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"invalid --bind {text!r}: port must be a number from 0 to 65535")
    return Bind(host=host, port=int(port_text))


LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


@dataclass(frozen=True)
class Config:
    """Plexicorn's settings. Build one directly, from CLI arguments or with `Config.from_toml`."""

    bind: tuple[str, ...] = setting(
        (), "Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH, or fd://N for an inherited "
        "listening socket (fd://NAME: a systemd socket's FileDescriptorName). Repeatable. Default "
        "127.0.0.1:8000, or 127.0.0.1:8443 with TLS; under systemd socket activation, the sockets "
        "systemd passes.", short="-b", metavar="ADDRESS")
    certfile: str | None = setting(
        None, "PEM certificate (chain) file; enables TLS with ALPN h2 and http/1.1.", metavar="FILE")
    keyfile: str | None = setting(
        None, "PEM private key file (omit if the key is in --certfile).", metavar="FILE")
    keyfile_password: str | None = setting(
        None, "Password of encrypted private keys (prefer the TOML file to the command line for secrets).",
        metavar="PASSWORD")
    cert: tuple[str, ...] = setting(
        (), "An extra certificate chosen by SNI: NAME=CERT.pem[,KEY.pem]; NAME may be *.example.com. Repeatable.",
        metavar="NAME=CERT[,KEY]")
    sni_dir: str | None = setting(
        None, "Directory of certificates chosen by SNI: NAME.pem (+ NAME.key), or certbot's "
        "NAME/fullchain.pem + NAME/privkey.pem; a leading _. in NAME means *.", metavar="DIR")
    tls_min_version: Literal["1.2", "1.3"] = setting(
        "1.2", "Oldest TLS version accepted: 1.2 or 1.3.", choices=("1.2", "1.3"))
    tls_ciphers: str = setting(
        "ECDHE+AESGCM:ECDHE+CHACHA20", "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are always AEAD).",
        metavar="CIPHERS")
    alpn: tuple[str, ...] = setting(
        ("h2", "http/1.1"), "Protocols offered by ALPN, in order of preference: h2, http/1.1 (repeatable or "
        "comma-separated; `--alpn http/1.1` turns HTTP/2 off on TLS).", metavar="PROTOCOL")
    h2c: bool = setting(
        True, "Accept HTTP/2 over cleartext: prior knowledge and Upgrade: h2c; --no-h2c serves HTTP/1.1 only.")
    http: Literal["auto", "1.1", "2"] = setting(
        "auto", "HTTP versions served: auto (HTTP/2 and HTTP/1.1, chosen per connection), 1.1 (HTTP/1.1 only), "
        "2 (HTTP/2 only: cleartext connections must open with the HTTP/2 preface, TLS offers only h2).",
        choices=("auto", "1.1", "2"))
    http1_parser: Literal["auto", "h11", "python", "httptools"] = setting(
        "auto", "HTTP/1.1 parser: h11 (the reference), python (our pure-Python parser for plain "
        "requests, h11 for anything else), httptools (llhttp, fastest; the plexicorn[httptools] extra) "
        "or auto (httptools when installed, else python).",
        choices=("auto", "h11", "python", "httptools"))
    ca_certs: str | None = setting(
        None, "PEM file of the CAs that sign client certificates (for --client-cert).", metavar="FILE")
    client_cert: Literal["none", "optional", "required"] = setting(
        "none", "Ask TLS clients for a certificate: none, optional, required.",
        choices=("none", "optional", "required"))
    tls_reload_interval: float = setting(
        5.0, "Seconds between checks of the certificate files for changes (0: reload on SIGHUP only).",
        metavar="SECONDS")
    redirect_http: str | None = setting(
        None, "Also listen in cleartext on HOST:PORT and answer 308 to the HTTPS URL.", metavar="HOST:PORT")
    hsts: int = setting(
        0, "Add Strict-Transport-Security: max-age=SECONDS to HTTPS responses (0: off).", metavar="SECONDS")
    dev_cert: bool = setting(
        False, "Serve TLS with a local development CA and a localhost certificate, "
        "created in --certs-dir on first use and reused afterwards.")
    certs_dir: str = setting(
        "certs", "Where --dev-cert keeps its CA and certificate.", metavar="DIR")
    tls_handshake_timeout: float = setting(
        10.0, "Seconds a client may take to finish the TLS handshake.", metavar="SECONDS")
    root_path: str = setting(
        "", "ASGI root_path: the path prefix the app is mounted at behind a proxy.", metavar="PATH")
    proxy_headers: bool = setting(
        True, "Believe X-Forwarded-For/-Proto and Forwarded (RFC 7239) from the peers of "
        "--forwarded-allow-ips: they set the scope's client and scheme (and the access log's client).")
    forwarded_allow_ips: str | None = setting(
        None, "Peers trusted to speak for their clients (forwarding headers, PROXY protocol): a comma list "
        "of addresses, networks (10.0.0.0/8), unix (Unix-socket peers) and * (any). Default: "
        "$FORWARDED_ALLOW_IPS, else 127.0.0.1,::1,unix.", metavar="ADDRESSES")
    forwarded_host: bool = setting(
        False, "Also take the scope's server (host and port) from a trusted X-Forwarded-Host or Forwarded host=.")
    proxy_protocol: Literal["off", "v1", "v2", "any"] = setting(
        "off", "Connections start with a PROXY protocol header (HAProxy send-proxy/send-proxy-v2), from "
        "a --forwarded-allow-ips peer, before TLS: off, v1, v2 or any (either); its addresses become the "
        "scope's client and server. A missing, malformed or untrusted header closes the connection.",
        choices=("off", "v1", "v2", "any"))
    server_header: bool = setting(
        False, "Send `server: plexicorn` in every response (an app's own server header wins).")
    date_header: bool = setting(
        True, "Send a date header in every response (an app's own date header wins).")
    header: tuple[str, ...] = setting(
        (), "A default response header, NAME:VALUE (repeatable); an app's own header of that name wins.",
        metavar="NAME:VALUE")
    lifespan: Literal["auto", "on", "off"] = setting(
        "auto", "Run the ASGI lifespan protocol: auto (if the app supports it), on, off.",
        choices=("auto", "on", "off"))
    factory: bool = setting(
        False, "APP names a factory: call it with no arguments to get the ASGI app.")
    app_dir: str = setting(
        ".", "Directory put first on sys.path before importing APP.", metavar="DIR")
    interface: Literal["auto", "asgi3", "asgi2", "wsgi"] = setting(
        "auto", "What APP is: auto (told apart by its signature), asgi3, asgi2 (a class or callable "
        "taking the scope), wsgi (PEP 3333, run in a thread pool).", choices=("auto", "asgi3", "asgi2", "wsgi"))
    wsgi_threads: int = setting(
        10, "Threads that run WSGI calls, per worker; calls beyond wait without a thread and "
        "without reading their request body.", metavar="N")
    loop: Literal["auto", "asyncio", "uvloop"] = setting(
        "auto", "Event loop: auto (uvloop when installed), asyncio, uvloop.",
        choices=("auto", "asyncio", "uvloop"))
    log_level: LogLevel = setting(
        "info", "Logging level (any case).", choices=("critical", "error", "warning", "info", "debug", "trace"))
    access_log: bool = setting(
        True, "Log one line per request (client, request line with protocol version, status, size, "
        "duration, user agent).")
    log_format: Literal["text", "json"] = setting(
        "text", "Log lines as text (ISO 8601 time, level, message) or json (one object per line, "
        "access lines with every field).", choices=("text", "json"))
    access_log_format: str = setting(
        '{client} - "{method} {target} HTTP/{http_version}" {status} {size} {duration_ms}ms '
        '"{user_agent}" {event} {close_code}',
        "Access lines in the text format, with {field}s (README: Logging); unknown fields are an error.",
        metavar="FORMAT")
    log_config: str | None = setting(
        None, "A logging.config.dictConfig in a .json or .toml file (loggers plexicorn.error and "
        "plexicorn.access); replaces --log-format and the log files.", metavar="FILE")
    access_log_file: str | None = setting(
        None, "Append access lines to FILE instead of stderr (- : stdout).", metavar="FILE")
    error_log_file: str | None = setting(
        None, "Append the server's other log lines to FILE instead of stderr (- : stderr).", metavar="FILE")
    keep_alive_timeout: float = setting(
        5.0, "Seconds an idle keep-alive connection stays open (HTTP/1.1; HTTP/2 with no open stream, "
        "closed with GOAWAY).", metavar="SECONDS")
    header_timeout: float = setting(
        10.0, "Seconds a client has to send a whole request head, from its first byte (HTTP/1.1: 408, "
        "then close; HTTP/2: a header block left open by CONTINUATION ends the connection with "
        "GOAWAY(ENHANCE_YOUR_CALM)).", metavar="SECONDS")
    body_timeout: float = setting(
        30.0, "Seconds the app may wait in receive() for the next piece of a request body before the "
        "request is ended (HTTP/1.1: 408 if nothing was sent yet, then close; HTTP/2: the stream "
        "is reset); 0: no limit.", metavar="SECONDS")
    limit_concurrency: int = setting(
        0, "Requests (HTTP and WebSocket) this worker process runs at once; one more is answered "
        "503 with Retry-After (a WebSocket handshake too) without reaching the app; 0 means no limit.",
        metavar="N")
    max_request_body_size: int = setting(
        0, "Largest request body accepted, in bytes: a larger content-length is answered 413 before "
        "the app runs, a body growing past it ends its request (the app's receive() returns "
        "http.disconnect); 0 means no limit.", metavar="BYTES")
    max_requests_per_connection: int = setting(
        0, "Requests served on one connection before it is recycled (HTTP/2: GOAWAY, the client "
        "reconnects; HTTP/1.1: connection: close); 0 means no limit.", metavar="N")
    graceful_timeout: float = setting(
        10.0, "Seconds in-flight requests get to finish on shutdown.", metavar="SECONDS")
    h2_max_concurrent_streams: int = setting(
        100, "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.", metavar="N")
    h2_max_header_list_size: int = setting(
        65536, "Largest request header block accepted, in bytes (HTTP/2 and HTTP/1.1).", metavar="BYTES")
    h2_initial_window_size: int = setting(
        256 * 1024, "HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE: request-body bytes one stream may have in "
        "flight; memory per connection is bounded by this times the stream limit.", metavar="BYTES")
    h2_connection_window_size: int = setting(
        16 * 1024 * 1024, "HTTP/2 connection receive window, re-opened as data arrives.", metavar="BYTES")
    h2_max_frame_size: int = setting(
        16384, "HTTP/2 SETTINGS_MAX_FRAME_SIZE: the largest frame payload accepted (16384 to 16777215).",
        metavar="BYTES")
    flood_window: float = setting(
        10.0, "Seconds over which the flood budgets below are counted (each refills continuously over "
        "this window).", metavar="SECONDS")
    h2_max_resets: int = setting(
        1000, "HTTP/2 stream resets one connection may cause, per --flood-window: every RST_STREAM "
        "the client sends (rapid reset) and every one the server must send because of the client "
        "(malformed requests, streams over the limit, flow-control errors: MadeYouReset); each "
        "completed response earns one back. Beyond it: GOAWAY(ENHANCE_YOUR_CALM).", metavar="N")
    h2_max_control_frames: int = setting(
        1000, "HTTP/2 frames one connection may send that carry no request, per --flood-window: "
        "SETTINGS, PING, PRIORITY, PRIORITY_UPDATE, WINDOW_UPDATE, GOAWAY, unknown types, empty "
        "CONTINUATION and empty DATA not ending its stream (tiny DATA, under 16 bytes, costs a "
        "tenth); each response and each DATA frame sent earns some back. Beyond it: "
        "GOAWAY(ENHANCE_YOUR_CALM).", metavar="N")
    h2_frames_per_turn: int = setting(
        100, "HTTP/2 frames (and at most 8 KiB of frames other than DATA, ~2,048 decoded header "
        "fields) of one connection handled before the other connections get their turn of the "
        "event loop.", metavar="N")
    ws_max_pings: int = setting(
        100, "WebSocket pings one client may send per --flood-window (answered with one pong for the "
        "latest ping when several wait); beyond it the WebSocket is closed with 1008.", metavar="N")
    ws_max_message_size: int = setting(
        16 * 1024 * 1024, "Largest WebSocket message accepted, in bytes; a larger one closes the "
        "WebSocket with 1009.", metavar="BYTES")
    ws_ping_interval: float = setting(
        20.0, "Seconds between the server's WebSocket pings (0: no pings).", metavar="SECONDS")
    ws_ping_timeout: float = setting(
        20.0, "Seconds a WebSocket client has to answer a ping (else closed with 1011) or the server's Close.",
        metavar="SECONDS")
    backlog: int = setting(2048, "Listen backlog of each socket.", metavar="N")
    reuse_port: bool = setting(
        False, "Set SO_REUSEPORT on the listening sockets, so that another server (a second "
        "deployment) can listen on the same port beside this one.")
    workers: int = setting(
        1, "Worker processes, or auto (the CPUs this process may use). Above 1, a supervisor binds "
        "the sockets and runs the workers, replacing any that dies.", short="-w", metavar="N", text=True)
    worker_healthcheck_timeout: float = setting(
        10.0, "Seconds a worker may leave the supervisor's heartbeat unanswered (its event loop "
        "blocked) before it is killed and replaced.", metavar="SECONDS")
    max_requests: int = setting(
        0, "Requests (HTTP and WebSocket) a worker serves before it is replaced, gracefully: a "
        "new worker starts, then the old one drains; 0 means never. Implies the supervisor.",
        metavar="N")
    max_requests_jitter: int = setting(
        0, "Add a random 0 to N to each worker's --max-requests, so that workers are not all "
        "replaced at once.", metavar="N")
    reload: bool = setting(
        False, "Development: restart the workers when a watched file changes (needs the "
        "plexicorn[reload] extra: watchfiles).")
    reload_dir: tuple[str, ...] = setting(
        (), "Directory watched by --reload (repeatable); default the --app-dir.", metavar="DIR")
    reload_include: tuple[str, ...] = setting(
        ("*.py",), "Glob pattern of the files --reload watches (repeatable; replaces the default, "
        "*.py).", metavar="PATTERN")
    reload_exclude: tuple[str, ...] = setting(
        (), "Glob pattern of files --reload ignores (repeatable).", metavar="PATTERN")
    gc_threshold: int = setting(
        10_000, "Net allocations of container objects between collections of Python's youngest "
        "garbage-collector generation in the serving process (the interpreter's default: 700, "
        "2,000 from Python 3.13); 0 leaves the interpreter's schedule.", metavar="N")
    metrics_bind: str | None = setting(
        None, "Serve Prometheus metrics at http://HOST:PORT/metrics, on a listener of their own "
        "(never the app's); with several workers, the whole server's numbers. Needs the "
        "plexicorn[metrics] extra (prometheus_client).", metavar="HOST:PORT")

    def __post_init__(self) -> None:
        for config_field in dataclasses.fields(self):
            value = getattr(self, config_field.name)
            if isinstance(config_field.default, tuple) and not isinstance(value, tuple):
                # Programmatic callers may pass one string or a list.
                object.__setattr__(self, config_field.name, (value,) if isinstance(value, str) else tuple(value))
        for text in self.bind:
            parse_bind(text)
        if isinstance(self.log_level, str):
            object.__setattr__(self, "log_level", self.log_level.lower())
        headers = self.default_headers  # validates --header
        if self.hsts and any(name == b"strict-transport-security" for name, _ in headers):
            # Two HSTS fields in one response; RFC 6797 §8.1 has the client take the first only.
            raise ConfigError("--hsts and --header strict-transport-security both set HSTS: use one "
                              "(--header for directives beyond max-age, e.g. includeSubDomains)")
        if self.http1_parser == "httptools" and importlib.util.find_spec("httptools") is None:
            raise ConfigError("--http1-parser httptools needs the httptools extra: pip install 'plexicorn[httptools]'")
        try:
            check_format(self.access_log_format)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        alpn = tuple(name.strip() for entry in self.alpn for name in entry.split(",") if name.strip())
        object.__setattr__(self, "alpn", alpn)
        if not alpn or len(set(alpn)) != len(alpn) or not set(alpn) <= {"h2", "http/1.1"}:
            raise ConfigError("--alpn takes h2 and/or http/1.1, each once, e.g. --alpn h2,http/1.1")
        self.sni_certificates  # validates the --cert syntax
        if self.redirect_http is not None:
            redirect = parse_bind(self.redirect_http)
            if redirect.is_unix:
                raise ConfigError("--redirect-http needs HOST:PORT, not a Unix socket")
        for name, needs in (("redirect_http", "--redirect-http"), ("hsts", "--hsts"), ("ca_certs", "--ca-certs")):
            if getattr(self, name) and not self.tls:
                raise ConfigError(f"{needs} needs TLS: give --certfile, --cert, --sni-dir or --dev-cert")
        if self.client_cert != "none" and not self.ca_certs:
            raise ConfigError(f"--client-cert {self.client_cert} needs --ca-certs (the CAs to verify clients with)")
        for config_field in dataclasses.fields(self):
            # NaN passes every comparison below, then fails inside the event loop's timers.
            value = getattr(self, config_field.name)
            if isinstance(config_field.default, float) and math.isnan(value):
                raise ConfigError(f"--{config_field.name.replace('_', '-')} must be a number of seconds, not nan")
        for name in ("hsts", "tls_reload_interval", "ws_ping_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
        for config_field in dataclasses.fields(self):
            choices = config_field.metadata.get("choices")
            if choices and getattr(self, config_field.name) not in choices:
                flag = "--" + config_field.name.replace("_", "-")
                raise ConfigError(f"{flag} must be one of {', '.join(choices)}, "
                                  f"not {getattr(self, config_field.name)!r}")
        if self.http == "2":
            if not self.h2c:
                raise ConfigError("--http 2 and --no-h2c contradict each other: cleartext would serve nothing")
            if "h2" not in alpn:
                raise ConfigError("--http 2 needs h2 in --alpn")
            object.__setattr__(self, "alpn", ("h2",))
        elif self.http == "1.1":
            if "http/1.1" not in alpn:
                raise ConfigError("--http 1.1 needs http/1.1 in --alpn")
            object.__setattr__(self, "alpn", ("http/1.1",))
            object.__setattr__(self, "h2c", False)
        if self.dev_cert and self.certfile:
            raise ConfigError("use either --certfile/--keyfile or --dev-cert, not both")
        if self.keyfile and not self.certfile:
            raise ConfigError("--keyfile needs --certfile")
        for name in ("keep_alive_timeout", "graceful_timeout", "tls_handshake_timeout", "ws_ping_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be greater than 0")
        if not 1 <= self.h2_max_concurrent_streams <= 2**31 - 1:
            raise ConfigError("--h2-max-concurrent-streams must be from 1 to 2147483647")
        if self.header_timeout <= 0:
            raise ConfigError("--header-timeout must be greater than 0")
        for name in ("body_timeout", "limit_concurrency", "max_request_body_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
        if self.max_requests_per_connection < 0:
            raise ConfigError("--max-requests-per-connection cannot be negative")
        # Not below the RFC default: until a client has our SETTINGS it may use 65535 bytes.
        if not 65535 <= self.h2_initial_window_size <= 2**31 - 1:
            raise ConfigError("--h2-initial-window-size must be from 65535 to 2147483647")
        if not 65535 <= self.h2_connection_window_size <= 2**31 - 1:
            raise ConfigError("--h2-connection-window-size must be from 65535 to 2147483647")
        if not 16384 <= self.h2_max_frame_size <= 16777215:
            raise ConfigError("--h2-max-frame-size must be from 16384 to 16777215")
        if self.flood_window <= 0:
            raise ConfigError("--flood-window must be greater than 0")
        for name in ("h2_max_resets", "h2_max_control_frames", "h2_frames_per_turn", "ws_max_pings"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.wsgi_threads < 1:
            raise ConfigError("--wsgi-threads must be at least 1")
        if self.ws_max_message_size < 1:
            raise ConfigError("--ws-max-message-size must be at least 1")
        if self.h2_max_header_list_size < 1024:
            raise ConfigError("--h2-max-header-list-size must be at least 1024")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError("--root-path must start with '/' and not end with '/', e.g. /api")
        if self.forwarded_allow_ips is None:
            object.__setattr__(self, "forwarded_allow_ips", os.environ.get("FORWARDED_ALLOW_IPS") or DEFAULT_ALLOW)
        try:
            TrustedPeers(self.forwarded_allow_ips)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(f"--forwarded-allow-ips: {exc}") from None
        object.__setattr__(self, "workers", _worker_count(self.workers))
        if self.worker_healthcheck_timeout <= 0:
            raise ConfigError("--worker-healthcheck-timeout must be greater than 0")
        for name in ("max_requests", "max_requests_jitter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
        if not 0 <= self.gc_threshold <= 2**31 - 1:  # gc.set_threshold takes a C int
            raise ConfigError("--gc-threshold must be from 0 to 2147483647")
        if self.reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise ConfigError("--reuse-port: this system has no SO_REUSEPORT")
        if self.metrics_bind is not None:
            try:
                metrics = parse_bind(self.metrics_bind)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("--bind", "--metrics-bind", 1)) from None
            if metrics.host is None:
                raise ConfigError(f"--metrics-bind takes HOST:PORT, not {self.metrics_bind!r}")
            if metrics.port and any((bind.host, bind.port) == (metrics.host, metrics.port) for bind in self.binds):
                raise ConfigError(f"--metrics-bind {self.metrics_bind} is an address the app is served on: "
                                  "metrics need a listener of their own")

    @property
    def supervised(self) -> bool:
        """Whether a supervisor runs worker processes (else one process serves)."""
        return self.workers > 1 or self.reload or self.max_requests > 0

    @property
    def tls(self) -> bool:
        return bool(self.certfile or self.dev_cert or self.cert or self.sni_dir)

    @property
    def sni_certificates(self) -> dict[str, tuple[str, str | None]]:
        """--cert entries as {name: (certfile, keyfile or None)}."""
        entries: dict[str, tuple[str, str | None]] = {}
        for entry in self.cert:
            name, sep, files = entry.partition("=")
            certfile, _, keyfile = files.partition(",")
            if not sep or not name or not certfile:
                raise ConfigError(f"invalid --cert {entry!r}: expected NAME=CERT.pem[,KEY.pem]")
            entries[name.lower()] = (certfile, keyfile or None)
        return entries

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """--header entries (and `server: plexicorn` with --server-header) as response fields."""
        headers = [(b"server", b"plexicorn")] if self.server_header else []
        for entry in self.header:
            name, sep, value = entry.partition(":")
            name, value = name.strip().lower(), value.strip()
            if not sep or not name or any(c not in _TOKEN for c in name) or any(
                    ord(c) < 0x20 and c != "\t" or ord(c) in (0x7F,) or ord(c) > 0xFF for c in value):
                raise ConfigError(f"invalid --header {entry!r}: expected NAME:VALUE, e.g. x-served-by:web1")
            if name in _HOP_BY_HOP:
                raise ConfigError(f"--header {name}: the server sets this field itself")
            if name == "server":  # replaces `server: plexicorn`
                headers = [header for header in headers if header[0] != b"server"]
            headers.append((name.encode("ascii"), value.encode("latin-1")))
        return headers

    @property
    def binds(self) -> list[Bind]:
        texts = self.bind or (("127.0.0.1:8443",) if self.tls else ("127.0.0.1:8000",))
        return [parse_bind(text) for text in texts]

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Config:
        """Load settings from a TOML file; keys are the field names (`access_log = false`)."""
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        return cls.from_mapping(data, source=str(path), **overrides)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str = "settings", **overrides: Any) -> Config:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"{source}: unknown setting {key!r}")
            values[name] = _coerce(fields[name], value, source)
        values.update(overrides)
        return cls(**values)


# RFC 9110 token characters (a header name), and fields a default header may not set.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade",
                         "te", "trailer", "proxy-connection", "date"})

MAX_WORKERS = 1024


def _worker_count(value: int | str) -> int:
    """--workers as a number: `auto` is the CPUs this process may run on."""
    if value == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"--workers must be a number of processes or auto, not {value!r}")
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError(f"--workers must be from 1 to {MAX_WORKERS} (or auto), not {value}")
    return value


def _coerce(config_field: dataclasses.Field, value: Any, source: str) -> Any:
    """Check a TOML value's type against the field's default, with a readable error."""
    if config_field.metadata.get("text") and isinstance(value, str):
        return value  # checked by Config itself (`workers = "auto"`)
    default = config_field.default
    expected: type | tuple[type, ...]
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {config_field.name} must be a list of strings")
        return tuple(value)
    if isinstance(default, bool):
        expected = bool
    elif isinstance(default, float):
        expected = (int, float)
    elif isinstance(default, int):
        expected = int
    else:
        expected = str
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        kind = ("true or false" if expected is bool else "an integer" if expected is int
                else "a string" if expected is str else "a number")
        raise ConfigError(f"{source}: {config_field.name} must be {kind}")
    return value
