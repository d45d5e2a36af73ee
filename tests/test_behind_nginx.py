"""A real nginx (Debian's nginx-light) in front of Plexicorn, configured with the README's own
snippet ("Behind a proxy"): nginx terminates TLS and HTTP/2 and talks to Plexicorn over a Unix
socket (trusted by default), adding X-Forwarded-For/-Proto. A client on 127.0.0.2 must be the
scope's client, with https, over HTTP and WebSocket; the client's own forged claims must not."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from conftest import free_port
from edgeapp import app, capture, readme_block, substitute, wait_listening

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx: apt-get install nginx-light")

CLIENT = "127.0.0.2"  # a loopback address of its own, so that the client is not the proxy

MAIN = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{snippet}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path, tls_files: tuple[str, str]) -> Any:
    processes: list[subprocess.Popen] = []

    def start(socket_path: str) -> int:
        port = free_port()
        snippet = substitute(readme_block("nginx", "proxy_pass http://plexicorn"), {
            "listen 443 ssl http2": f"listen 127.0.0.1:{port} ssl http2",
            "unix:/run/plexicorn/app.sock": f"unix:{socket_path}",
            "/etc/ssl/example.com/fullchain.pem": tls_files[0],
            "/etc/ssl/example.com/privkey.pem": tls_files[1],
        })
        # As root, nginx's workers would run as nobody, who cannot reach pytest's private tmp.
        user = "user root;" if os.geteuid() == 0 else ""
        config = tmp_path / "nginx.conf"
        config.write_text(MAIN.format(tmp=tmp_path, user=user, snippet=snippet))
        command = ["nginx", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        processes.append(process)
        wait_listening(port, process)
        return port

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def test_nginx_over_a_unix_socket_forwards_client_and_scheme(serve: Any, nginx: Any, tmp_path: Path, verify: Any,
                                                             ca: Any, caplog: Any, monkeypatch: Any) -> None:
    access = capture(caplog, monkeypatch, "plexicorn.access", logging.INFO)
    socket_path = str(tmp_path / "app.sock")
    serve(app, bind=(f"unix:{socket_path}",), access_log=True)
    port = nginx(socket_path)

    transport = httpx.HTTPTransport(http2=True, verify=verify, local_address=CLIENT)
    with httpx.Client(transport=transport, verify=verify, timeout=10) as http:
        responses = [http.get(f"https://127.0.0.1:{port}/through-nginx/{index}", headers={
            "x-forwarded-for": "6.6.6.6", "forwarded": "for=6.6.6.6;proto=http"}) for index in range(2)]
    for response in responses:
        assert response.status_code == 200 and response.http_version == "HTTP/2"  # client to nginx
        seen = json.loads(response.content)
        assert seen["client"] == [CLIENT, 0] and seen["scheme"] == "https" and seen["http_version"] == "1.1"
        # nginx appended the client's address to the client's own claim, and dropped its Forwarded.
        assert seen["headers"]["x-forwarded-for"] == f"6.6.6.6, {CLIENT}" and "forwarded" not in seen["headers"]
    assert access.wait_for('"GET /through-nginx/1 ').startswith(f"{CLIENT}:0 ")

    async def websocket() -> dict:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=context, local_addr=(CLIENT, 0)) as connection:
            return json.loads(await asyncio.wait_for(connection.recv(), 10))

    seen = asyncio.run(websocket())
    assert seen["type"] == "websocket" and seen["client"] == [CLIENT, 0] and seen["scheme"] == "wss"
