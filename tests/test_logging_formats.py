"""Log lines parsed back: JSON lines decoded field by field for HTTP/1.1, HTTP/2, TLS, WebSocket
and a reset HTTP/2 stream; the text form's ISO 8601 time and --access-log-format; --log-config;
the log files; `plexicorn.run()` setting up logging as the command does."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import websockets.sync.client
from conftest import free_port
from h2wsclient import H2WSConnection
from test_cli import APPS, TIMEOUT, plexicorn, run_cli  # noqa: F401 (plexicorn: the fixture)

APP = ("logging_app:app", "--app-dir", APPS)


def serve(plexicorn, *args: object):  # type: ignore[no-untyped-def]
    port = free_port()
    process = plexicorn(*APP, "--bind", f"127.0.0.1:{port}", *args)
    assert process.wait_listening() == port
    return process, port


def json_lines(text: str) -> list[dict]:
    """Every stderr line, decoded: each must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access(records: list[dict], **match: object) -> dict:
    found = [r for r in records if r["logger"] == "plexicorn.access"
             and all(r.get(key) == value for key, value in match.items())]
    assert len(found) == 1, (match, records)
    return found[0]


def wait_for_json(process, **match: object) -> dict:  # type: ignore[no-untyped-def]
    """The next access line whose fields match, decoded."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        line = process.stderr.wait_for('"plexicorn.access"', timeout=max(0.1, deadline - time.monotonic()))
        record = json.loads(line)
        if all(record.get(key) == value for key, value in match.items()):
            return record


def check_time(value: str) -> None:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value  # the offset is there
    assert abs(parsed.timestamp() - time.time()) < 60


def test_json_access_lines_for_http1_and_http2_over_tls(plexicorn, tls_files, verify):
    process, port = serve(plexicorn, "--certfile", tls_files[0], "--keyfile", tls_files[1], "--log-format", "json")
    headers = {"user-agent": "log-test/1", "referer": "https://example.test/from"}
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2, verify=verify, timeout=TIMEOUT) as client:
            response = client.get(f"https://localhost:{port}/a%20b?x=1&y=2", headers=headers)
        assert response.text == "hello"
        version = "2" if http2 else "1.1"
        record = wait_for_json(process, http_version=version)
        assert record["method"] == "GET" and record["status"] == 200 and record["size"] == 5
        assert record["path"] == "/a b" and record["query"] == "x=1&y=2" and record["target"] == "/a%20b?x=1&y=2"
        assert record["user_agent"] == "log-test/1" and record["referer"] == "https://example.test/from"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", record["client"])
        assert record["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert record["alpn"] == ("h2" if http2 else "http/1.1")
        assert record["stream_id"] == (1 if http2 else None)
        assert isinstance(record["duration_ms"], float) and 0 <= record["duration_ms"] < TIMEOUT * 1000
        assert record["level"] == "INFO" and record["event"] == "" and record["close_code"] is None
        check_time(record["time"])
    assert process.stop() == 0
    records = json_lines(process.stderr.text)  # every line, not only access lines, is JSON
    listening = [r for r in records if r["logger"] == "plexicorn.error" and r["message"].startswith("Listening on")]
    assert listening and listening[0]["level"] == "INFO"
    assert {r["logger"] for r in records} == {"plexicorn.error", "plexicorn.access"}


def test_json_lines_for_websockets_and_responses_the_client_cut_short(plexicorn):
    process, port = serve(plexicorn, "--log-format", "json", "--ws-ping-interval", "0")
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/chat?room=2", open_timeout=TIMEOUT) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
        opened = wait_for_json(process, path="/chat")
        assert opened["status"] == 101 and opened["http_version"] == "1.1" and opened["event"] == ""
        assert opened["query"] == "room=2" and opened["user_agent"].startswith("Python/")
    closed = wait_for_json(process, path="/chat", event="websocket-close")
    assert closed["close_code"] == 1000 and closed["status"] == 101 and closed["size"] >= 4  # frames: "hi" echoed, the Close
    assert closed["duration_ms"] >= opened["duration_ms"]

    # HTTP/2 (h2c prior knowledge): the head arrives, then the client resets the stream.
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/hang"), (":scheme", "http"),
                              (":authority", f"127.0.0.1:{port}"), ("user-agent", "resetter")], end_stream=True)
        sock.sendall(conn.data_to_send())
        while not any(isinstance(event, h2.events.ResponseReceived) for event in conn.receive_data(sock.recv(65536))):
            pass
        conn.reset_stream(1)
        sock.sendall(conn.data_to_send())
        reset = wait_for_json(process, path="/hang", http_version="2")
    assert reset["event"] == "reset" and reset["stream_id"] == 1 and reset["status"] == 200
    assert reset["http_version"] == "2" and reset["user_agent"] == "resetter" and reset["size"] == len("partial")

    # HTTP/1.1: the head and part of the body arrive, then the client hangs up.
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /hang?h1 HTTP/1.1\r\nhost: x\r\nuser-agent: leaver\r\n\r\n")
        received = b""
        while b"partial" not in received:
            received += sock.recv(65536)
    left = wait_for_json(process, path="/hang", http_version="1.1")
    assert left["event"] == "reset" and left["status"] == 200 and left["user_agent"] == "leaver"
    assert left["stream_id"] is None and left["query"] == "h1"

    async def websocket_over_http2() -> None:  # RFC 8441: an extended CONNECT stream
        conn = await H2WSConnection.open(port)
        ws = await conn.websocket("/h2chat?x=1")
        await ws.send_text("yo")
        assert await ws.receive() == "yo"
        await ws.close()
        await ws.wait_closed()
    asyncio.run(websocket_over_http2())
    opened = wait_for_json(process, path="/h2chat", event="")
    assert opened["method"] == "CONNECT" and opened["status"] == 200 and opened["http_version"] == "2"
    assert opened["stream_id"] == 1 and opened["query"] == "x=1"
    closed = wait_for_json(process, path="/h2chat", event="websocket-close")
    assert closed["close_code"] == 1000 and closed["stream_id"] == 1 and closed["size"] >= 4
    assert process.stop() == 0
    json_lines(process.stderr.text)


def test_text_lines_have_an_iso_8601_time_and_the_access_log_format(plexicorn):
    fmt = "{method} {path} q={query} {status} {size} {http_version} {stream_id} ua={user_agent} t={duration_ms}"
    process, port = serve(plexicorn, "--access-log-format", fmt)
    httpx.get(f"http://127.0.0.1:{port}/x?k=v", headers={"user-agent": "curlish"}, timeout=TIMEOUT)
    line = process.stderr.wait_for("GET /x").rstrip("\n")
    match = re.fullmatch(r"(\S+) INFO  GET /x q=k=v 200 5 1\.1 - ua=curlish t=(\d+\.\d+)", line)
    assert match, line
    check_time(match.group(1))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", match.group(1))
    assert process.stop() == 0


def test_an_unknown_access_log_field_is_one_line_error(tmp_path):
    result = run_cli(*APP, "--access-log-format", "{client} {nope}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert "unknown field {nope}" in result.stderr and "user_agent" in result.stderr
    # Hypercorn's %(h)s atoms are not silently printed as they are.
    result = run_cli(*APP, "--access-log-format", '%(h)s "%(r)s" %(s)s', cwd=tmp_path)
    assert result.returncode == 2 and "{field}" in result.stderr, result.stderr


def test_log_config_json_is_applied(plexicorn, tmp_path):
    log = tmp_path / "all.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1,
        "formatters": {"mine": {"format": "MINE %(name)s|%(levelname)s|%(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "mine"}},
        "loggers": {"plexicorn": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }))
    port = free_port()
    process = plexicorn(*APP, "--bind", f"127.0.0.1:{port}", "--log-config", config)
    wait_until_file_has(log, "Listening on")
    assert httpx.get(f"http://127.0.0.1:{port}/cfg", timeout=TIMEOUT).text == "hello"
    wait_until_file_has(log, "GET /cfg")
    assert process.stop() == 0
    lines = log.read_text().splitlines()
    assert any(line.startswith("MINE plexicorn.error|INFO|Listening on") for line in lines), lines
    assert any(line.startswith('MINE plexicorn.access|INFO|127.0.0.1:') and '"GET /cfg HTTP/1.1" 200 5' in line
               for line in lines), lines
    assert "Listening on" not in process.stderr.text


def test_log_config_toml_is_applied_and_a_bad_one_is_one_line(plexicorn, tmp_path):
    config = tmp_path / "logging.toml"
    config.write_text('version = 1\n[formatters.plain]\nformat = "TOML %(name)s %(message)s"\n'
                      '[handlers.err]\nclass = "logging.StreamHandler"\nformatter = "plain"\n'
                      '[loggers.plexicorn]\nhandlers = ["err"]\nlevel = "INFO"\npropagate = false\n')
    process, port = serve(plexicorn, "--log-config", config)
    httpx.get(f"http://127.0.0.1:{port}/t", timeout=TIMEOUT)
    assert process.stderr.wait_for("GET /t").startswith("TOML plexicorn.access 127.0.0.1:")
    assert process.stop() == 0
    # Hypercorn's toml: prefix, on a file without the suffix; Plexicorn's JSON formatter by name.
    prefixed = tmp_path / "logging.conf"
    prefixed.write_text('[formatters.json]\n"()" = "plexicorn.logs.JSONFormatter"\n'
                        '[handlers.err]\nclass = "logging.StreamHandler"\nformatter = "json"\n'
                        '[loggers.plexicorn]\nhandlers = ["err"]\npropagate = false\n')
    process, port = serve(plexicorn, "--log-config", f"toml:{prefixed}")
    httpx.get(f"http://127.0.0.1:{port}/j", timeout=TIMEOUT)
    assert json.loads(process.stderr.wait_for('"/j"'))["path"] == "/j"
    assert process.stop() == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    result = run_cli(*APP, "--log-config", bad, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("plexicorn: error: --log-config")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def wait_until_file_has(path: Path, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.02)


def test_access_and_error_log_files_with_workers_in_json(plexicorn, tmp_path):
    access_file, error_file = tmp_path / "access.log", tmp_path / "error.log"
    port = free_port()
    process = plexicorn(*APP, "--bind", f"127.0.0.1:{port}", "--workers", 2, "--log-format", "json",
                        "--access-logfile", access_file, "--error-log-file", error_file)
    wait_until_file_has(error_file, "Listening on")
    for number in range(20):  # fresh connections: both workers are likely to serve some
        assert httpx.get(f"http://127.0.0.1:{port}/n{number}", timeout=TIMEOUT).text == "hello"
    wait_until_file_has(access_file, '"/n19"')
    assert process.stop() == 0
    records = json_lines(access_file.read_text())
    assert sorted(r["path"] for r in records) == sorted(f"/n{n}" for n in range(20))
    assert {r["logger"] for r in records} == {"plexicorn.access"} and all(r["pid"] for r in records)
    errors = json_lines(error_file.read_text())
    assert any(r["message"].startswith("Listening on") for r in errors)
    assert "Listening on" not in process.stderr.text and '"/n1"' not in process.stderr.text



def test_every_access_field_is_documented():
    from plexicorn.runtime.accesslog import FIELDS
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text().split("## Logging", 1)[1]
    for name in FIELDS:
        assert f"| `{name}` |" in readme, name


def test_run_sets_up_logging_like_the_command(plexicorn, tmp_path):
    port = free_port()
    code = (f"import plexicorn; plexicorn.run('logging_app:app', bind=['127.0.0.1:{port}'], "
            f"dev_cert=True, certs_dir={str(tmp_path / 'certs')!r})")
    process = plexicorn(command=[sys.executable, "-c", code], cwd=APPS)
    line = process.stderr.wait_for("Listening on")
    assert re.search(rf"^\S+ INFO  Listening on https://127\.0\.0\.1:{port} ", line), line
    assert f"Development CA: {tmp_path / 'certs'}" in process.stderr.text
    assert process.stop() == 0


def test_serve_sets_up_logging_like_the_command(plexicorn):
    port = free_port()
    code = ("import asyncio, plexicorn; "
            f"asyncio.run(plexicorn.serve('logging_app:app', plexicorn.Config(bind=['127.0.0.1:{port}'], "
            "log_format='json')))")
    process = plexicorn(command=[sys.executable, "-c", code], cwd=APPS)
    record = json.loads(process.stderr.wait_for("Listening on"))
    assert record["message"] == f"Listening on http://127.0.0.1:{port} (http/1.1, h2c)"
    assert process.stop() == 0


def test_run_leaves_logging_the_caller_configured(plexicorn):
    port = free_port()
    code = ("import logging, plexicorn; logging.basicConfig(level=logging.INFO, format='CALLER %(message)s'); "
            f"plexicorn.run('logging_app:app', bind=['127.0.0.1:{port}'])")
    process = plexicorn(command=[sys.executable, "-c", code], cwd=APPS)
    assert process.stderr.wait_for("Listening on").startswith(f"CALLER Listening on http://127.0.0.1:{port}")
    assert process.stop() == 0


def test_text_access_lines_escape_control_characters_a_client_sent():
    from plexicorn.runtime.accesslog import DEFAULT_FORMAT, AccessEntry

    AccessEntry.set_format('{client} "{method} {target}" {user_agent}')
    try:
        entry = AccessEntry({"client": ("1.2.3.4", 5), "headers": [(b"user-agent", b"x\x1b[31m\r\nFAKE \xc2\x85")]},
                            None, "GET", "/a\r\n2026-01-01 INFO forged", "1.1", 200, 1, 0.001, None, "", None)
        line = str(entry)
    finally:
        AccessEntry.set_format(DEFAULT_FORMAT)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x85" not in line
    assert line.startswith('1.2.3.4:5 "GET /a\\r\\n2026-01-01 INFO forged" x\\x1b[31m\\r\\nFAKE')
