"""curl against both servers: ALPN h2, h2c by prior knowledge and by Upgrade, HTTP/1.1,
uploads with --data-binary, and response trailers as `curl -v` shows them."""

from __future__ import annotations

import hashlib
import os
import re

from ..runner import (
    CaseFailed,
    CaseResult,
    Environment,
    Options,
    SuiteSkipped,
    find_tool,
    run_case,
)
from ._tools import run_tool

NAME = "curl"
HINT = "install curl (Debian/Ubuntu: apt-get install curl; macOS: brew install curl)"
UPLOAD_SIZE = 4 * 1024 * 1024


def run(env: Environment, options: Options) -> list[CaseResult]:
    curl = find_tool("curl", "CURL")
    if curl is None:
        raise SuiteSkipped(HINT)
    tls, h2c = env.tls_server, env.h2c_server
    base = [curl, "--silent", "--show-error", "--max-time", "30", "--cacert", str(env.tls_material.ca_file)]
    upload = env.work_dir / "upload.bin"
    if not upload.exists():
        upload.write_bytes(os.urandom(UPLOAD_SIZE))
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()

    def get(flags: list[str], url: str, version: str, body: str) -> None:
        """`curl FLAGS URL` answers `body` over HTTP `version` (as curl reports it)."""
        done = run_tool(base + flags + ["--write-out", "\n%{http_version} %{http_code}", url])
        text = done.stdout.decode("utf-8", "replace")
        got_body, _, summary = text.rpartition("\n")
        if summary != f"{version} 200" or got_body != body:
            raise CaseFailed(f"HTTP/{version} 200 {body!r}", f"{summary!r} {got_body!r}")

    def echo(flags: list[str], url: str, version: str) -> None:
        """Upload `upload` with --data-binary; the echo must come back byte for byte."""
        out = env.work_dir / f"echo-{version}.bin"
        done = run_tool(base + flags + ["--data-binary", f"@{upload}", "-H", "content-type: application/octet-stream",
                                        "--output", str(out), "--write-out", "%{http_version} %{http_code}",
                                        url + "/echo"])
        summary = done.stdout.decode().strip()
        got = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else "nothing"
        if summary != f"{version} 200" or got != digest:
            raise CaseFailed(f"HTTP/{version} 200 and the {UPLOAD_SIZE} bytes echoed (sha256 {digest[:12]})",
                             f"{summary!r}, {out.stat().st_size if out.exists() else 0} bytes (sha256 {got[:12]})")

    def trailers(flags: list[str], url: str) -> None:
        """`curl -v` shows the trailer fields after the body, not among the headers."""
        done = run_tool(base + flags + ["--verbose", url + "/trailers"])
        log = done.stderr.decode("utf-8", "replace")
        lines = log.splitlines()
        if not any(line.startswith("< HTTP/2 200") for line in lines):
            raise CaseFailed("an HTTP/2 200 response", _excerpt(log))
        end_of_headers = next((i for i, line in enumerate(lines) if line.strip() == "<"), None)
        trailer_line = next((i for i, line in enumerate(lines) if line.startswith("< x-trailer-check: done")), None)
        if end_of_headers is None or trailer_line is None or trailer_line < end_of_headers:
            raise CaseFailed("'< x-trailer-check: done' after the header section", _excerpt(log))
        if done.stdout != b"body before the trailers\n":
            raise CaseFailed("the body", repr(done.stdout[:80]))

    def raw_http1_trailers(url: str) -> None:
        """curl -v does not print HTTP/1.1 trailers; --raw shows the chunked framing with them."""
        done = run_tool(base + ["--http1.1", "--raw", "-H", "TE: trailers", url + "/trailers"])
        if not re.search(rb"\r\n0\r\n(?:[^\r\n]+\r\n)*x-trailer-check: done\r\n", done.stdout):
            raise CaseFailed("a last chunk followed by 'x-trailer-check: done'", repr(done.stdout[-120:]))

    cases = [
        ("--http2 over TLS: ALPN selects h2", lambda: get(["--http2"], tls.url + "/hello", "2", "Hello over HTTP/2\n")),
        ("--http2-prior-knowledge over cleartext (h2c)",
         lambda: get(["--http2-prior-knowledge"], h2c.url + "/hello", "2", "Hello over HTTP/2\n")),
        ("--http2 over cleartext: Upgrade: h2c then HTTP/2 (RFC 7540 §3.2)",
         lambda: get(["--http2"], h2c.url + "/hello", "2", "Hello over HTTP/2\n")),
        ("--http1.1 over TLS: ALPN selects http/1.1",
         lambda: get(["--http1.1"], tls.url + "/hello", "1.1", "Hello over HTTP/1.1\n")),
        ("--http1.1 over cleartext", lambda: get(["--http1.1"], h2c.url + "/hello", "1.1", "Hello over HTTP/1.1\n")),
        (f"--data-binary upload of {UPLOAD_SIZE // 2**20} MiB over h2 (TLS), echoed intact",
         lambda: echo(["--http2"], tls.url, "2")),
        (f"--data-binary upload of {UPLOAD_SIZE // 2**20} MiB over h2c, echoed intact",
         lambda: echo(["--http2-prior-knowledge"], h2c.url, "2")),
        (f"--data-binary upload of {UPLOAD_SIZE // 2**20} MiB over HTTP/1.1 (TLS), echoed intact",
         lambda: echo(["--http1.1"], tls.url, "1.1")),
        ("-v shows response trailers over h2 (TLS)", lambda: trailers(["--http2"], tls.url)),
        ("-v shows response trailers over h2c", lambda: trailers(["--http2-prior-knowledge"], h2c.url)),
        ("--raw shows HTTP/1.1 chunked trailers", lambda: raw_http1_trailers(h2c.url)),
    ]
    return [run_case(name, check) for name, check in cases if options.selects(name)]


def _excerpt(log: str) -> str:
    lines = [line for line in log.splitlines() if line.startswith(("<", ">"))]
    return " | ".join(lines[-12:])

