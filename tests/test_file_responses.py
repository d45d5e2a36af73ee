"""File responses: the ASGI `http.response.pathsend` and `http.response.zerocopysend` extensions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from urllib.parse import parse_qs

import h2.events
import h2.settings
import httpx
import pytest
from conftest import RunningServer
from h2client import H2Client

SIZE = 3 * 1024 * 1024 + 123  # not a multiple of any chunk size


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def big_file(tmp_path):
    data = os.urandom(SIZE)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return str(path), data


@pytest.fixture
def errors(caplog, monkeypatch):
    """ERROR records of plexicorn.error mentioning `path`, from any thread."""
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR, logger="plexicorn.error")

    def records(path: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.ERROR
                and path in r.getMessage()]
    return records


def make_app(file_path: str, sent: threading.Event | None = None):
    """/path?file=..&length=1: pathsend; /zerocopy?offset=..&count=..&length=1&tail=1: zerocopysend;
    /extensions: the scope's extension names as JSON."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        query = {key: values[0] for key, values in parse_qs(scope["query_string"].decode()).items()}
        if scope["path"] == "/extensions":
            body = json.dumps(sorted(scope["extensions"])).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["path"] == "/path":
            headers = [(b"content-length", str(os.path.getsize(file_path)).encode())] if "length" in query else []
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.pathsend", "path": query.get("file", file_path)})
            if sent is not None:
                sent.set()
            return
        if scope["path"] == "/zerocopy":
            offset = int(query["offset"]) if "offset" in query else None
            count = int(query["count"]) if "count" in query else None
            tail = b"tail" if "tail" in query else b""
            with open(file_path, "rb") as file:
                if "seek" in query:
                    file.seek(int(query["seek"]))
                headers = [(b"content-length", query["length"].encode())] if "length" in query else []
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                message = {"type": "http.response.zerocopysend", "file": file, "more_body": bool(tail)}
                if offset is not None:
                    message["offset"] = offset
                if count is not None:
                    message["count"] = count
                await send(message)
            if tail:
                await send({"type": "http.response.body", "body": tail})
    return app


# -- pathsend ------------------------------------------------------------------------------------

@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_pathsend_sends_the_whole_file_over_http1(serve, big_file, declared):
    path, data = big_file
    running = serve(make_app(path))
    with httpx.Client() as client:
        response = client.get(running.url + "/path" + ("?length=1" if declared else ""))
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        if declared:
            assert response.headers["content-length"] == str(SIZE)
        else:
            assert response.headers["transfer-encoding"] == "chunked"
        assert digest(response.content) == digest(data)
        # The response ended where it should: the connection carries the next request.
        again = client.get(running.url + "/extensions")
        assert "http.response.pathsend" in again.json()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_pathsend_sends_the_whole_file_over_http2(serve, big_file, verify, declared):
    path, data = big_file
    running = serve(make_app(path), tls=True)
    with httpx.Client(http2=True, verify=verify) as client:
        response = client.get(running.url + "/path" + ("?length=1" if declared else ""))
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert digest(response.content) == digest(data)


def test_pathsend_respects_http2_flow_control_and_bounded_buffer(serve, big_file, client_ssl_context):
    path, data = big_file
    sent = threading.Event()
    running = serve(make_app(path, sent), tls=True)
    window = 16 * 1024
    with H2Client(running.port, ssl_context=client_ssl_context(),
                  settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}, auto_window=False) as client:
        client.wait_for(lambda: bool(client.events_of(h2.events.SettingsAcknowledged)))
        stream_id = client.request("GET", "/path?length=1")
        entry = client.responses[stream_id]
        client.wait_for(lambda: len(entry["body"]) >= window)
        client.conn.ping(b"12345678")
        client.flush()
        client.wait_for(lambda: bool(client.events_of(h2.events.PingAckReceived)))
        # Not a byte beyond the window, and the app is held in send() with a bounded buffer.
        assert len(entry["body"]) == window
        assert not sent.is_set()
        pending = running.call(lambda: [record.send.size for conn in running.server.context.connections
                                        if hasattr(conn, "table") for record in conn.table.streams.values()])
        assert pending and max(pending) <= 2 * 64 * 1024
        client.auto_window = True
        client.conn.increment_flow_control_window(SIZE, stream_id)
        client.conn.increment_flow_control_window(SIZE)
        client.flush()
        response = client.response(stream_id)
        assert response["status"] == 200 and response["reset"] is None
        assert digest(bytes(response["body"])) == digest(data)
    assert sent.wait(5)


@pytest.mark.parametrize("what", ["relative", "missing"])
def test_pathsend_bad_path_after_start_aborts_http1_response_and_logs(serve, big_file, errors, what):
    path, _ = big_file
    running = serve(make_app(path))
    bad = "big.bin" if what == "relative" else path + ".missing"
    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(running.url + "/path", params={"file": bad})  # chunked: the end never comes
    assert errors("/path")


def test_pathsend_bad_path_resets_http2_stream_and_logs(serve, big_file, errors, client_ssl_context):
    path, _ = big_file
    running = serve(make_app(path), tls=True)
    with H2Client(running.port, ssl_context=client_ssl_context()) as client:
        stream_id = client.request("GET", "/path?file=relative.bin&length=1")
        response = client.response(stream_id)
        assert response["status"] == 200  # the start was out before the error
        assert response["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR and not response["body"]
        # The connection serves other streams on.
        again = client.response(client.request("GET", "/extensions"))
        assert again["status"] == 200
    assert errors("/path")


def test_pathsend_head_sends_no_body(serve, big_file, verify):
    path, _ = big_file
    running = serve(make_app(path), tls=True)
    for http2 in (False, True):
        with httpx.Client(http2=http2, verify=verify) as client:
            response = client.head(running.url + "/path?length=1")
            assert response.status_code == 200
            assert response.headers["content-length"] == str(SIZE)
            assert response.content == b""
            # HTTP/1.1: no stray body bytes precede the next response on the connection.
            assert client.get(running.url + "/extensions").status_code == 200


# -- zerocopysend --------------------------------------------------------------------------------

@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_zerocopysend_sends_the_file_slice_over_cleartext_http1(serve, big_file, declared):
    path, data = big_file
    running = serve(make_app(path))
    offset, count = 1000, SIZE - 5000
    query = f"?offset={offset}&count={count}" + (f"&length={count}" if declared else "")
    with httpx.Client() as client:
        response = client.get(running.url + "/zerocopy" + query)
        assert response.status_code == 200
        assert ("transfer-encoding" in response.headers) is not declared
        assert len(response.content) == count
        assert digest(response.content) == digest(data[offset:offset + count])
        # The framing held: the same connection carries the next response.
        assert client.get(running.url + "/zerocopy?offset=7&count=9").content == data[7:16]


def test_zerocopysend_defaults_to_file_position_and_end_then_more_body(serve, big_file):
    path, data = big_file
    running = serve(make_app(path))
    with httpx.Client() as client:
        response = client.get(running.url + "/zerocopy?seek=4096&tail=1")
        assert digest(response.content) == digest(data[4096:] + b"tail")


def test_zerocopysend_longer_than_content_length_aborts(serve, big_file, errors):
    path, _ = big_file
    running = serve(make_app(path))
    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(running.url + "/zerocopy?offset=0&count=100&length=50")
    assert errors("/zerocopy")


def test_zerocopysend_advertised_on_cleartext_http1_only(serve, big_file, verify, client_ssl_context):
    path, _ = big_file
    plain = serve(make_app(path))
    secure = serve(make_app(path), tls=True)
    with httpx.Client() as client:
        assert {"http.response.pathsend", "http.response.zerocopysend"} <= set(
            client.get(plain.url + "/extensions").json())
    for http2 in (False, True):
        with httpx.Client(http2=http2, verify=verify) as client:
            response = client.get(secure.url + "/extensions")
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert "http.response.pathsend" in response.json()
            assert "http.response.zerocopysend" not in response.json()
    with H2Client(plain.port) as client:  # h2c, prior knowledge
        response = client.response(client.request("GET", "/extensions"))
        names = json.loads(bytes(response["body"]))
        assert "http.response.pathsend" in names and "http.response.zerocopysend" not in names


def test_zerocopysend_where_not_advertised_resets_stream_and_logs(serve, big_file, errors, client_ssl_context):
    path, _ = big_file
    running = serve(make_app(path), tls=True)
    with H2Client(running.port, ssl_context=client_ssl_context()) as client:
        response = client.response(client.request("GET", "/zerocopy?count=10"))
        assert response["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR and not response["body"]
    assert any("zerocopysend" in str(r.exc_info[1]) for r in errors("/zerocopy") if r.exc_info)


class UvloopServer(RunningServer):
    """The conftest server, on a uvloop loop (which has no loop.sendfile)."""

    def _run(self) -> None:
        import uvloop

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(self.server.serve())
            started = asyncio.ensure_future(self.server.started.wait())
            await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            await task

        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()


def test_zerocopysend_falls_back_to_copying_on_uvloop(big_file):
    pytest.importorskip("uvloop")
    from plexicorn.config import Config
    path, data = big_file
    running = UvloopServer(make_app(path), Config(bind=("127.0.0.1:0",), access_log=False)).start()
    try:
        assert running.call(lambda: type(asyncio.get_running_loop()).__module__).startswith("uvloop")
        with httpx.Client() as client:
            response = client.get(running.url + "/zerocopy?offset=10&count=2000000&length=2000000")
            assert digest(response.content) == digest(data[10:2000010])
            chunked = client.get(running.url + "/zerocopy?offset=3")
            assert digest(chunked.content) == digest(data[3:])
    finally:
        running.stop()
