"""A real HAProxy in front of Plexicorn, configured with the README's own snippets ("Behind a
proxy"): in HTTP mode terminating TLS and adding X-Forwarded-For/-Proto, and in TCP mode with
send-proxy-v2 in front of Plexicorn's TLS, the client negotiating h2 with Plexicorn through it.
The client connects from 127.0.0.2, HAProxy to Plexicorn from 127.0.0.1 (the trusted proxy):
the app's scope must name 127.0.0.2 and https in both."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import free_port
from edgeapp import app, capture, readme_block, substitute, wait_listening

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs HAProxy: apt-get install haproxy")

CLIENT = "127.0.0.2"  # a loopback address of its own, so that the client is not the proxy

DEFAULTS = """\
defaults
    timeout connect 2s
    timeout client 15s
    timeout server 15s
"""


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen] = []

    def start(snippet: str) -> int:
        port = free_port()
        config = tmp_path / f"haproxy-{len(processes)}.cfg"
        config.write_text(DEFAULTS + substitute(snippet, {"bind :443": f"bind 127.0.0.1:{port}"}))
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        wait_listening(port, process)
        return port

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def client(verify: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(http2=True, verify=verify, local_address=CLIENT),
                        verify=verify, timeout=10)


def test_http_mode_terminating_tls_forwards_client_and_scheme(serve: Any, haproxy: Any, tls_files: Any,
                                                              verify: Any, caplog: Any, monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    running = serve(app, access_log=True)  # cleartext on 127.0.0.1: HAProxy is a trusted loopback peer
    snippet = readme_block("haproxy", "option forwardfor")
    port = haproxy(substitute(snippet, {"/etc/haproxy/example.com.pem": tls_files[0],
                                        "127.0.0.1:8000": f"127.0.0.1:{running.port}"}))
    with client(verify) as http:
        response = http.get(f"https://127.0.0.1:{port}/through-haproxy",
                            headers={"x-forwarded-for": "6.6.6.6", "forwarded": "for=6.6.6.6;proto=http"})
    assert response.status_code == 200 and response.http_version == "HTTP/2"  # client to HAProxy
    seen = json.loads(response.content)
    assert seen["client"] == [CLIENT, 0] and seen["scheme"] == "https"
    assert seen["http_version"] == "1.1" and not seen["ssl"]  # HAProxy to Plexicorn: cleartext HTTP/1.1
    # The client's own claims: its X-Forwarded-For entry is left of HAProxy's, its Forwarded is gone.
    assert "6.6.6.6" in seen["headers"]["x-forwarded-for"] and "forwarded" not in seen["headers"]
    assert access.wait_for('"GET /through-haproxy ').startswith(f"{CLIENT}:0 ")


def test_tcp_mode_send_proxy_v2_in_front_of_plexicorn_tls_and_h2(serve: Any, haproxy: Any, verify: Any,
                                                                 caplog: Any, monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    running = serve(app, tls=True, proxy_protocol="v2", access_log=True)
    snippet = readme_block("haproxy", "send-proxy-v2")
    port = haproxy(substitute(snippet, {"127.0.0.1:8443": f"127.0.0.1:{running.port}"}))
    with client(verify) as http:
        responses = [http.get(f"https://127.0.0.1:{port}/h2/{index}") for index in range(3)]
    for response in responses:
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        seen = json.loads(response.content)
        # TLS, ALPN and HTTP/2 are Plexicorn's own; the address is the PROXY header's.
        assert seen["http_version"] == "2" and seen["scheme"] == "https" and seen["ssl"]
        assert seen["client"][0] == CLIENT and seen["client"][1] > 0
        assert seen["server"] == ["127.0.0.1", port]  # where the client connected: HAProxy's port
    assert access.wait_for('"GET /h2/2 ').startswith(f"{CLIENT}:")
    assert running.server.counters.proxy_header_rejects == 0
