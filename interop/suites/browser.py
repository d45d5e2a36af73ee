"""Headless Chromium: a page over HTTP/2, 50 parallel fetches, a wss:// WebSocket over HTTP/2
(RFC 8441). The page (`/browser` in interop/app.py) reports what it saw to the server; the
suite collects the report with a GET that waits for it."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Callable
from typing import Any

from ..app import PAGE_RESOURCES, REPORT_WAIT
from ..browser import INSTALL_HINT, Chromium, find_chromium, spki_sha256
from ..runner import (
    CaseFailed,
    CaseResult,
    Environment,
    Options,
    SuiteSkipped,
    run_case,
)

NAME = "browser"


def run(env: Environment, options: Options) -> list[CaseResult]:
    chromium = find_chromium()
    if chromium is None:
        raise SuiteSkipped(INSTALL_HINT)
    server = env.tls_server
    material = env.tls_material
    report: dict[str, Any] = {}

    def load_page() -> str:
        trust = [spki_sha256(material.cert_file.read_bytes())]
        context = ssl.create_default_context(cafile=str(material.ca_file))
        with Chromium(server.url + "/browser", executable=chromium, trusted_spki=trust) as browser:
            try:
                with urllib.request.urlopen(server.url + "/browser/report", context=context,
                                            timeout=REPORT_WAIT + 10) as response:
                    report.update(json.loads(response.read()))
            except OSError as exc:
                raise CaseFailed("the page's report", f"{exc}\n{browser.describe()}") from None
        if "error" in report:
            raise CaseFailed("the page to run without error", report["error"])
        return f"Chromium: {chromium}"

    def navigation_over_h2() -> None:
        if _need(report)["navigation"] != "h2":
            raise CaseFailed('performance.getEntries()[0].nextHopProtocol === "h2"', repr(report["navigation"]))

    def fetches_over_h2() -> None:
        fetches = _need(report)["fetches"]
        statuses = [fetch["status"] for fetch in fetches]
        versions = {fetch["serverVersion"] for fetch in fetches}
        protocols = set(report["protocols"])
        if statuses != [200] * PAGE_RESOURCES or versions != {"2"} or protocols != {"h2"}:
            raise CaseFailed(f"{PAGE_RESOURCES} fetches answered 200 over h2 (server scope http_version 2)",
                             f"statuses {sorted(set(statuses))}, server versions {versions}, protocols {protocols}")

    def websocket_over_h2() -> str:
        websocket = _need(report)["websocket"]
        info = websocket["info"]
        if info["http_version"] != "2" or info["scheme"] != "wss" or websocket["echo"] != "echo over h2":
            raise CaseFailed("a wss:// WebSocket whose server scope says http_version 2, echoing",
                             json.dumps(websocket))
        return f"attempt {websocket['attempt']}"

    cases: list[tuple[str, Callable[[], object]]] = [
        ("TLS: headless Chromium loads /browser and reports", load_page),
        ('TLS: the page came over HTTP/2 (nextHopProtocol "h2")', navigation_over_h2),
        (f"TLS: {PAGE_RESOURCES} parallel fetches answered over HTTP/2", fetches_over_h2),
        ("TLS: wss:// WebSocket ran over HTTP/2 (RFC 8441; the server's scope says so)", websocket_over_h2),
    ]
    chosen = [(name, check) for name, check in cases[1:] if options.selects(name)]
    if not chosen:
        return []
    # The checks read the report of the first case, so it always runs with them.
    return [run_case(name, check) for name, check in cases[:1] + chosen]


def _need(report: dict[str, Any]) -> dict[str, Any]:
    if not report:
        raise CaseFailed("the page's report", "none (see the case before)")
    return report
