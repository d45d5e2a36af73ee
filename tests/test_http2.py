"""HTTP/2 behaviour seen from the wire: stream independence, flow control both ways,
resets, SETTINGS, refused streams, connection errors, big bodies, header mapping."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import struct
import threading
import time

import h2.events
import httpx
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from h2client import H2Client
from plexicorn.http2 import lifecycle

KIB = 1024
MIB = 1024 * 1024


# -- helpers ---------------------------------------------------------------------------------------

def http_only(app):
    """Wrap an app so lifespan scopes are declined (lifespan=auto then goes on without it)."""
    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("lifespan not supported")
        await app(scope, receive, send)
    return wrapper


async def respond(send, status=200, body=b"", headers=()):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive):
    body = bytearray()
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message["body"]
        if not message["more_body"]:
            return bytes(body)


class Gate:
    """An asyncio.Event on the server loop: apps wait on it, the test opens it."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def _get(self) -> asyncio.Event:
        if self._event is None:  # created on the server loop, by whichever side comes first
            self._event = asyncio.Event()
        return self._event

    async def wait(self) -> None:
        await self._get().wait()

    def open(self, running) -> None:
        running.call(lambda: self._get().set())


class Arrivals:
    """Counts apps reaching a point; the test waits for a number of them."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def arrive(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count >= count, timeout)


def server_settings(client: H2Client) -> dict[int, int]:
    client.wait_for(lambda: client.events_of(h2.events.RemoteSettingsChanged))
    event = client.events_of(h2.events.RemoteSettingsChanged)[0]
    return {code: changed.new_value for code, changed in event.changed_settings.items()}


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def no_tasks_left(running) -> bool:
    return wait_until(lambda: running.call(lambda: len(running.server.context.tasks)) == 0)


def window_updates(client: H2Client, stream_id: int) -> list:
    return [e for e in client.events_of(h2.events.WindowUpdated) if e.stream_id == stream_id]


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes, length: int | None = None) -> bytes:
    """A frame built by hand, for frames hyperframe or h2 would refuse to produce."""
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + struct.pack(">BBI", frame_type, flags, stream_id) + payload


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def ok(client: H2Client, path: str = "/") -> dict:
    response = client.response(client.request("GET", path))
    assert response["status"] == 200 and response["reset"] is None, response
    return response


# -- 1. stream independence ----------------------------------------------------------------------

def test_a_blocked_stream_does_not_hold_up_99_others_on_the_same_connection(serve):
    gate = Gate()
    blocked_reached = threading.Event()

    @http_only
    async def app(scope, receive, send):
        if scope["path"] == "/blocked":
            blocked_reached.set()
            await gate.wait()
        await respond(send, body=f"done {scope['path']}".encode())

    running = serve(app)
    with H2Client(running.port) as client:
        blocked = client.request("GET", "/blocked")
        others = {client.request("GET", f"/n/{index}"): index for index in range(99)}
        assert blocked_reached.wait(5)
        client.wait_for(lambda: all(client.responses[sid]["ended"] for sid in others))
        for sid, index in others.items():
            response = client.responses[sid]
            assert response["status"] == 200 and response["reset"] is None
            assert bytes(response["body"]) == f"done /n/{index}".encode()
        # Everyone else is done while the blocked one still waits.
        assert client.responses[blocked]["status"] is None
        assert not client.responses[blocked]["ended"] and client.responses[blocked]["reset"] is None

        gate.open(running)
        response = client.response(blocked)
    assert response["status"] == 200
    assert bytes(response["body"]) == b"done /blocked"


# -- 2. streamed request bodies --------------------------------------------------------------------

def test_upload_in_many_data_frames_reaches_the_app_as_more_body_messages(serve):
    payload = payload_of(1 * MIB)

    @http_only
    async def app(scope, receive, send):
        flags, size, digest = [], 0, hashlib.sha256()
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            flags.append(message["more_body"])
            size += len(message["body"])
            digest.update(message["body"])
            if not message["more_body"]:
                break
        await respond(send, body=json.dumps({"flags": flags, "size": size, "sha256": digest.hexdigest()}).encode())

    running = serve(app)
    with H2Client(running.port) as client:
        window = server_settings(client)[SettingCodes.INITIAL_WINDOW_SIZE]
        sid = client.request("POST", "/", body=payload, end_stream=True)  # framed at 16 KiB: 64 DATA frames
        response = client.response(sid)
    assert response["status"] == 200
    report = json.loads(response["body"])
    assert report["size"] == len(payload)
    assert report["sha256"] == hashlib.sha256(payload).hexdigest()
    assert report["flags"][-1] is False and all(report["flags"][:-1])
    # The stream window bounds what one message can carry, so the body came in pieces.
    assert len(report["flags"]) >= len(payload) // window


# -- 3. flow control, receive side --------------------------------------------------------------------

def test_unread_body_fills_the_stream_window_and_it_reopens_only_as_the_app_reads(serve):
    payload = payload_of(2 * MIB, seed=3)
    gate = Gate()
    reached = threading.Event()
    read_before_release = []

    @http_only
    async def app(scope, receive, send):
        reached.set()
        await gate.wait()
        read_before_release.append(False)
        body = await read_body(receive)
        await respond(send, body=json.dumps({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())

    running = serve(app)
    with H2Client(running.port) as client:
        window = server_settings(client)[SettingCodes.INITIAL_WINDOW_SIZE]
        # The connection window is widened in the same flight as SETTINGS; wait for it so only
        # the stream window limits us.
        client.wait_for(lambda: window_updates(client, 0))
        sid = client.request("POST", "/", end_stream=False)
        assert reached.wait(5)
        assert client.conn.local_flow_control_window(sid) == window

        sent = 0
        while (room := min(client.conn.local_flow_control_window(sid), client.conn.max_outbound_frame_size)) > 0:
            client.conn.send_data(sid, payload[sent:sent + room])
            sent += room
        client.flush()
        assert sent == window
        assert client.conn.local_flow_control_window(sid) == 0

        client.ping_barrier()
        assert window_updates(client, sid) == []
        assert read_before_release == []

        gate.open(running)
        client.send_body(sid, payload[sent:])  # waits for the WINDOW_UPDATEs the reads trigger
        response = client.response(sid)
        assert window_updates(client, sid), "the stream window was never re-opened"
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


# -- 4. flow control, send side ----------------------------------------------------------------------

def test_send_waits_on_a_closed_client_window_instead_of_buffering_the_response(serve):
    chunk, total = 64 * KIB, 10 * MIB
    payload = payload_of(total, seed=4)
    progress = {"sends": 0}

    @http_only
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for offset in range(0, total, chunk):
            await send({"type": "http.response.body", "body": payload[offset:offset + chunk], "more_body": True})
            progress["sends"] += 1
        await send({"type": "http.response.body", "body": b""})

    running = serve(app)
    with H2Client(running.port, auto_window=False) as client:  # default 65535 windows, never acked
        sid = client.request("GET", "/")
        body = client.responses[sid]["body"]
        client.wait_for(lambda: len(body) >= 65535)
        client.ping_barrier()
        assert len(body) == 65535
        sends = running.call(lambda: progress["sends"])
        # Bytes the server took: every chunk whose send() returned, plus the one it is holding.
        assert (sends + 1) * chunk < 512 * KIB, f"{sends} sends of 64 KiB returned against a closed window"

        client.conn.increment_flow_control_window(32 * MIB, sid)
        client.conn.increment_flow_control_window(32 * MIB)
        client.flush()
        response = client.response(sid, timeout=20)
    assert response["status"] == 200 and response["reset"] is None
    assert len(response["body"]) == total
    assert bytes(response["body"]) == payload
    assert progress["sends"] == total // chunk


# -- 5. client resets --------------------------------------------------------------------------------

def test_client_reset_gives_http_disconnect_to_an_app_waiting_in_receive(serve):
    waiting = threading.Event()
    done = threading.Event()
    seen = []

    @http_only
    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await respond(send, body=b"ok")
            return
        seen.append(await read_body(receive))
        waiting.set()
        seen.append(await receive())
        done.set()

    running = serve(app)
    with H2Client(running.port) as client:
        sid = client.request("POST", "/wait", body=b"hello", end_stream=True)
        assert waiting.wait(5)
        client.ping_barrier()
        assert not done.is_set()  # nothing but the reset may end that receive()

        client.reset(sid, ErrorCodes.CANCEL)
        assert done.wait(5)
        assert seen == [b"hello", {"type": "http.disconnect"}]
        assert no_tasks_left(running)
        assert bytes(ok(client, "/ok")["body"]) == b"ok"
        assert not client.events_of(h2.events.ConnectionTerminated)


def test_client_reset_ends_an_endlessly_streaming_app_and_the_connection_stays_usable(serve):
    ended = threading.Event()
    outcome = {}

    @http_only
    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await respond(send, body=b"ok")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 16 * KIB, "more_body": True})
        except BaseException as exc:
            outcome["error"] = exc
            raise
        finally:
            ended.set()

    running = serve(app)
    with H2Client(running.port) as client:
        sid = client.request("GET", "/stream")
        client.wait_for(lambda: len(client.responses[sid]["body"]) >= 256 * KIB)
        assert not ended.is_set()
        client.reset(sid, ErrorCodes.CANCEL)
        assert ended.wait(5)
        # ASGI 2.4: send() on a gone client raises an OSError subclass.
        assert isinstance(outcome["error"], OSError)
        assert no_tasks_left(running)
        assert bytes(ok(client, "/ok")["body"]) == b"ok"
        assert not client.events_of(h2.events.ConnectionTerminated)


# -- 6. SETTINGS and PING --------------------------------------------------------------------------

def test_server_settings_and_ping_acknowledgement(serve):
    @http_only
    async def app(scope, receive, send):
        await respond(send)

    running = serve(app)
    with H2Client(running.port) as client:
        settings = server_settings(client)
        assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
        assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 65536
        assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 256 * KIB
        assert settings[SettingCodes.ENABLE_PUSH] == 0

        client.conn.ping(b"\x00opaque\xff")
        client.flush()
        client.wait_for(lambda: client.events_of(h2.events.PingAckReceived))
        assert [e.ping_data for e in client.events_of(h2.events.PingAckReceived)] == [b"\x00opaque\xff"]


# -- 7. too many streams -------------------------------------------------------------------------------

def test_stream_over_max_concurrent_streams_is_refused_and_the_connection_lives_on(serve):
    gate = Gate()
    arrivals = Arrivals()
    paths = []

    @http_only
    async def app(scope, receive, send):
        paths.append(scope["path"])
        if scope["path"] == "/block":
            arrivals.arrive()
            await gate.wait()
        await respond(send, body=scope["path"].encode())

    running = serve(app, h2_max_concurrent_streams=5)
    with H2Client(running.port) as client:
        assert server_settings(client)[SettingCodes.MAX_CONCURRENT_STREAMS] == 5
        blocked = [client.request("GET", "/block") for _ in range(5)]
        assert arrivals.wait_for(5)

        # Play a client that ignores the limit (h2 would refuse to open the stream otherwise).
        client.conn.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
        client.conn.remote_settings.acknowledge()
        extra = client.request("GET", "/extra")
        response = client.response(extra)
        assert response["reset"] == ErrorCodes.REFUSED_STREAM
        assert response["status"] is None
        client.ping_barrier()
        assert not client.events_of(h2.events.ConnectionTerminated)
        assert "/extra" not in paths

        gate.open(running)
        for sid in blocked:
            assert client.response(sid)["status"] == 200
        assert bytes(ok(client, "/after")["body"]) == b"/after"


# -- 8. connection errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("frame, error_code", [
    pytest.param(raw_frame(0x0, 0x1, 0, b"x"), ErrorCodes.PROTOCOL_ERROR, id="data-on-stream-0"),
    pytest.param(raw_frame(0x0, 0x0, 1, b"x" * (16384 + 1)), ErrorCodes.FRAME_SIZE_ERROR,
                 id="frame-over-max-frame-size"),
    # The header alone must do: a peer announcing an oversized frame is not waited for.
    pytest.param(raw_frame(0x0, 0x0, 1, b"", length=16 * MIB - 1), ErrorCodes.FRAME_SIZE_ERROR,
                 id="oversized-frame-header-alone"),
    pytest.param(raw_frame(0x1, 0x4, 2, b"\x82"), ErrorCodes.PROTOCOL_ERROR, id="headers-on-even-stream"),
    pytest.param(raw_frame(0x8, 0x0, 0, struct.pack(">I", 0)), ErrorCodes.PROTOCOL_ERROR,
                 id="window-update-of-zero"),
    pytest.param(raw_frame(0x4, 0x0, 0, b"\x00\x03\x00\x00\x00"), ErrorCodes.FRAME_SIZE_ERROR,
                 id="settings-not-a-multiple-of-6"),
    # An HTTP/1.1 request where a frame should be: "GET" read as a 4.6 MB frame length.
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", ErrorCodes.FRAME_SIZE_ERROR,
                 id="http11-garbage-after-preface"),
])
def test_connection_error_sends_goaway_and_other_connections_keep_working(serve, frame, error_code):
    @http_only
    async def app(scope, receive, send):
        await read_body(receive)
        await respond(send, body=b"fine")

    running = serve(app)
    with H2Client(running.port) as bystander, H2Client(running.port) as bad:
        assert bytes(ok(bystander)["body"]) == b"fine"
        server_settings(bad)
        bad.request("POST", "/", end_stream=False)  # stream 1 is open
        bad.sock.sendall(frame)
        bad.wait_for(lambda: bad.events_of(h2.events.ConnectionTerminated))
        goaway = bad.events_of(h2.events.ConnectionTerminated)[0]
        assert goaway.error_code == error_code
        bad.wait_closed()

        assert bytes(ok(bystander)["body"]) == b"fine"
        with H2Client(running.port) as fresh:
            assert bytes(ok(fresh)["body"]) == b"fine"


# -- 9. big bodies over TLS --------------------------------------------------------------------------

class EchoApp:
    """Echoes each request chunk as it arrives, counting the messages it got."""

    def __init__(self) -> None:
        self.messages = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("lifespan not supported")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            self.messages += 1
            await send({"type": "http.response.body", "body": message["body"], "more_body": message["more_body"]})
            if not message["more_body"]:
                return


def test_8mib_upload_is_echoed_back_streaming_over_tls_with_httpx(serve, verify):
    payload = payload_of(8 * MIB, seed=8)
    app = EchoApp()
    running = serve(app, tls=True)
    with httpx.Client(http2=True, verify=verify, timeout=30) as client:
        response = client.post(running.url + "/echo", content=payload)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert len(response.content) == len(payload)
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(payload).digest()
    # The 256 KiB stream window means the echo went chunk by chunk, not as one body.
    assert app.messages >= len(payload) // (256 * KIB)


def test_8mib_echo_over_tls_with_default_client_windows_runs_full_duplex(serve, client_ssl_context):
    # httpx opens a 16 MiB window per stream, so it never has to read while it uploads.
    # H2Client keeps the 65535-byte default: the echo can only finish if the server keeps
    # reading the upload while its response waits on the client's WINDOW_UPDATEs.
    payload = payload_of(8 * MIB, seed=9)
    running = serve(EchoApp(), tls=True)
    with H2Client(running.port, ssl_context=client_ssl_context()) as client:
        sid = client.request("POST", "/echo", body=payload, end_stream=True)
        response = client.response(sid, timeout=30)
    assert response["status"] == 200 and response["reset"] is None
    assert len(response["body"]) == len(payload)
    assert hashlib.sha256(response["body"]).digest() == hashlib.sha256(payload).digest()


def test_16mib_streamed_download_over_tls_with_httpx_arrives_intact(serve, verify):
    chunk = 256 * KIB
    payload = payload_of(16 * MIB, seed=16)

    @http_only
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for offset in range(0, len(payload), chunk):
            await send({"type": "http.response.body", "body": payload[offset:offset + chunk], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = serve(app, tls=True)
    digest, size = hashlib.sha256(), 0
    with httpx.Client(http2=True, verify=verify, timeout=30) as client:
        with client.stream("GET", running.url + "/") as response:
            assert response.http_version == "HTTP/2"
            for data in response.iter_bytes():
                digest.update(data)
                size += len(data)
    assert size == len(payload)
    assert digest.digest() == hashlib.sha256(payload).digest()


# -- 10. header mapping ------------------------------------------------------------------------------

def test_authority_becomes_host_and_cookie_crumbs_are_joined(serve):
    @http_only
    async def app(scope, receive, send):
        headers = [[name.decode(), value.decode()] for name, value in scope["headers"]]
        await respond(send, body=json.dumps(headers).encode())

    running = serve(app)
    with H2Client(running.port) as client:
        sid = client.request("GET", "/", authority=b"example.test:8443", headers=[
            (b"cookie", b"a=1"), (b"x-other", b"yes"), (b"cookie", b"b=2"), (b"cookie", b"c=3")])
        response = client.response(sid)
    headers = json.loads(response["body"])
    assert ["host", "example.test:8443"] in headers
    assert [value for name, value in headers if name == "cookie"] == ["a=1; b=2; c=3"]
    assert ["x-other", "yes"] in headers
    assert not any(name.startswith(":") for name, _ in headers)


def test_http11_connection_headers_from_the_app_are_dropped(serve):
    @http_only
    async def app(scope, receive, send):
        await respond(send, body=b"hello", headers=[
            (b"content-type", b"text/plain"), (b"connection", b"keep-alive"),
            (b"transfer-encoding", b"chunked"), (b"keep-alive", b"timeout=5")])

    running = serve(app)
    with H2Client(running.port) as client:
        response = client.response(client.request("GET", "/"))
        client.ping_barrier()
        assert not client.events_of(h2.events.ConnectionTerminated)
    assert response["status"] == 200 and response["reset"] is None
    names = [name for name, _ in response["headers"]]
    assert b"content-type" in names
    assert not {b"connection", b"transfer-encoding", b"keep-alive"} & set(names)
    assert bytes(response["body"]) == b"hello"


def test_response_fields_are_sent_in_http2_form_with_credentials_never_indexed(serve):
    """h2 does not validate nor normalise our outbound fields (stream.py's outbound_fields does):
    names lower-case, values without surrounding whitespace, credentials kept out of HPACK's
    dynamic table, the same on the trailers."""
    from hpack import NeverIndexedHeaderTuple

    @http_only
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "trailers": True, "headers": [
            (b"X-Mixed-Case", b"  padded\t"), (b"set-cookie", b"session=secret"),
            (b"authorization", b"Bearer x"), (b"te", b"trailers"), (b"x-plain", b"v")]})
        await send({"type": "http.response.body", "body": b"ok"})
        await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b" abc ")]})

    running = serve(app)
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/")
        response = client.response(stream_id)
        client.ping_barrier()
        assert not client.events_of(h2.events.ConnectionTerminated)
        trailers = [event.headers for event in client.events_of(h2.events.TrailersReceived)
                    if event.stream_id == stream_id]
    fields = {bytes(name): field for name, field in ((field[0], field) for field in response["headers"])}
    assert fields[b"x-mixed-case"][1] == b"padded"
    assert b"te" not in fields
    assert isinstance(fields[b"set-cookie"], NeverIndexedHeaderTuple)
    assert isinstance(fields[b"authorization"], NeverIndexedHeaderTuple)
    assert not isinstance(fields[b"x-plain"], NeverIndexedHeaderTuple)
    assert [tuple(field) for field in trailers[0]] == [(b"x-checksum", b"abc")]


def test_head_response_carries_no_data_payload(serve):
    @http_only
    async def app(scope, receive, send):
        await respond(send, body=b"hello", headers=[(b"content-length", b"5")])

    running = serve(app)
    with H2Client(running.port) as client:
        sid = client.request("HEAD", "/")
        response = client.response(sid)
    assert response["status"] == 200 and response["ended"]
    assert (b"content-length", b"5") in response["headers"]
    assert bytes(response["body"]) == b""
    assert all(e.data == b"" for e in client.events_of(h2.events.DataReceived) if e.stream_id == sid)


# -- 11. response before the upload is read ----------------------------------------------------------

def test_response_without_reading_the_upload_resets_the_stream_with_no_error(serve):
    @http_only
    async def app(scope, receive, send):
        await respond(send, body=b"early")

    running = serve(app)
    with H2Client(running.port) as client:
        server_settings(client)
        sid = client.request("POST", "/upload", end_stream=False)
        client.send_body(sid, payload_of(64 * KIB), end_stream=False)  # the start of a large upload
        entry = client.responses[sid]
        client.wait_for(lambda: entry["reset"] is not None)
        assert entry["status"] == 200 and entry["ended"]
        assert bytes(entry["body"]) == b"early"
        assert entry["reset"] == ErrorCodes.NO_ERROR

        # DATA a client sends before it sees the reset: written raw, as h2 knows the stream is closed.
        client.sock.sendall(DataFrame(sid, b"late" * 4096).serialize() * 8)
        client.ping_barrier()
        assert not client.events_of(h2.events.ConnectionTerminated)
        assert bytes(ok(client)["body"]) == b"early"


# -- 12. app failure mid-response --------------------------------------------------------------------

def test_app_raising_after_starting_resets_only_its_stream_with_internal_error(serve):
    gate = Gate()
    slow_started = threading.Event()

    @http_only
    async def app(scope, receive, send):
        if scope["path"] == "/fail":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("boom after start")
        slow_started.set()
        await gate.wait()
        await respond(send, body=b"slow but fine")

    running = serve(app)
    with H2Client(running.port) as client:
        slow = client.request("GET", "/slow")
        assert slow_started.wait(5)
        failing = client.request("GET", "/fail")
        response = client.response(failing)
        assert response["status"] == 200
        assert response["reset"] == ErrorCodes.INTERNAL_ERROR
        assert not response["ended"]

        gate.open(running)
        response = client.response(slow)
        assert response["status"] == 200 and response["reset"] is None
        assert bytes(response["body"]) == b"slow but fine"
        assert not client.events_of(h2.events.ConnectionTerminated)


# -- 13. malformed requests are stream errors (RFC 9113 §8.1.1) --------------------------------

GOOD_HEAD = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"localhost")]

MALFORMED_REQUESTS = {
    "uppercase field name": GOOD_HEAD + [(b"X-Upper", b"1")],
    "connection-specific field": GOOD_HEAD + [(b"connection", b"keep-alive")],
    "te other than trailers": GOOD_HEAD + [(b"te", b"gzip")],
    "missing :path": [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost")],
    "empty :path": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b""), (b":authority", b"x")],
    "pseudo-header after a field": [(b":method", b"GET"), (b":scheme", b"http"), (b"accept", b"*/*"),
                                    (b":path", b"/"), (b":authority", b"localhost")],
    "duplicate :method": GOOD_HEAD + [(b":method", b"POST")],
    "unknown pseudo-header": GOOD_HEAD + [(b":status", b"200")],
    "host differs from :authority": GOOD_HEAD + [(b"host", b"elsewhere")],
    "value with a newline": GOOD_HEAD + [(b"x-bad", b"a\nb")],
    "value with surrounding space": GOOD_HEAD + [(b"x-bad", b" padded")],
    "relative :path": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"nope"), (b":authority", b"x")],
    "content-length not a number": GOOD_HEAD + [(b"content-length", b"12a")],
    "content-length values that differ": GOOD_HEAD + [(b"content-length", b"1"), (b"content-length", b"2")],
    "content-length without a body": GOOD_HEAD + [(b"content-length", b"5")],  # sent with END_STREAM
}


@pytest.mark.parametrize("case", sorted(MALFORMED_REQUESTS))
def test_malformed_request_resets_only_its_stream_and_other_streams_finish(serve, case):
    gate = Gate()
    arrivals = Arrivals()
    seen_paths: list[str] = []

    async def app(scope, receive, send):
        seen_paths.append(scope["path"])
        if scope["path"] == "/slow":
            arrivals.arrive()
            await gate.wait()
        await respond(send, body=b"fine")

    running = serve(http_only(app))
    with H2Client(running.port) as client:
        slow = client.request("GET", "/slow")
        assert arrivals.wait_for(1)
        # Send the bad block as it is: the client side must not tidy it up.
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        bad = client.conn.get_next_available_stream_id()
        client.conn.send_headers(bad, MALFORMED_REQUESTS[case], end_stream=True)
        client.responses[bad] = {"status": None, "headers": [], "body": bytearray(), "ended": False, "reset": None}
        client.flush()
        assert client.response(bad)["reset"] == ErrorCodes.PROTOCOL_ERROR
        gate.open(running)
        assert bytes(client.response(slow)["body"]) == b"fine"  # the stream in flight is untouched
        client.conn.config.validate_outbound_headers = True
        client.conn.config.normalize_outbound_headers = True
        assert bytes(ok(client, "/after")["body"]) == b"fine"  # and the connection lives on
        assert not client.events_of(h2.events.ConnectionTerminated)
    assert seen_paths == ["/slow", "/after"]  # the malformed request never reached the app


def test_pseudo_header_in_request_trailers_resets_the_stream(serve):
    received: dict[str, list[dict]] = {}

    async def app(scope, receive, send):
        messages = received.setdefault(scope["path"], [])
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        if messages[-1]["type"] != "http.disconnect":
            await respond(send, body=b"done")

    running = serve(http_only(app))
    with H2Client(running.port) as client:
        stream_id = client.request("POST", "/upload", body=b"abc", end_stream=False)
        client.conn.config.validate_outbound_headers = False
        client.conn.send_headers(stream_id, [(b":path", b"/sneaky")], end_stream=True)
        client.flush()
        assert client.response(stream_id)["reset"] == ErrorCodes.PROTOCOL_ERROR
        client.conn.config.validate_outbound_headers = True
        ok(client, "/after")
    assert received["/upload"][-1] == {"type": "http.disconnect"}
    assert {"type": "http.request", "body": b"", "more_body": False} not in received["/upload"]


def test_header_block_over_the_advertised_limit_is_answered_431_and_the_connection_carries_on(serve):
    paths = []

    async def app(scope, receive, send):
        paths.append(scope["path"])
        await respond(send, body=b"fine")

    running = serve(http_only(app))
    with H2Client(running.port) as client:
        client.wait_for(lambda: client.events_of(h2.events.SettingsAcknowledged))
        # Literal fields that enter the HPACK table: the next request's block refers to them, so
        # the connection only works on if the refused block was still decoded whole.
        big = client.request("GET", "/big", headers=[(b"x-big", b"a" * 70000), (b"x-next", b"kept")])  # limit 65536
        assert client.response(big)["status"] == 431
        after = client.request("GET", "/after", headers=[(b"x-next", b"kept")])
        assert bytes(client.response(after)["body"]) == b"fine"
        assert not client.events_of(h2.events.ConnectionTerminated)
    assert paths == ["/after"]  # the app never saw the oversized request


def test_header_block_far_over_the_limit_ends_the_connection_with_enhance_your_calm(serve):
    async def app(scope, receive, send):
        await respond(send, body=b"fine")

    running = serve(http_only(app), h2_max_header_list_size=4096)
    with H2Client(running.port) as client:
        client.wait_for(lambda: client.events_of(h2.events.SettingsAcknowledged))
        client.request("GET", "/", headers=[(b"x-big", b"a" * 20_000)])  # over 4 x 4096: an HPACK bomb
        client.wait_closed()
        (goaway,) = client.events_of(h2.events.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    with H2Client(running.port) as other:
        assert bytes(ok(other)["body"]) == b"fine"


@pytest.mark.parametrize("sent, declared", [(b"x" * 10, 5), (b"x" * 3, 5)], ids=["longer", "shorter"])
def test_body_not_matching_its_content_length_resets_only_its_stream(serve, sent, declared):
    gate = Gate()
    arrivals = Arrivals()
    disconnects: list[str] = []

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            arrivals.arrive()
            await gate.wait()
        while scope["path"] == "/upload":
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnects.append(scope["path"])
                return
            if not message["more_body"]:
                await respond(send, body=b"the bad body was delivered whole")
                return
        await respond(send, body=b"fine")

    running = serve(http_only(app))
    with H2Client(running.port) as client:
        slow = client.request("GET", "/slow")
        assert arrivals.wait_for(1)
        bad = client.request("POST", "/upload", body=sent, end_stream=True,
                             headers=[(b"content-length", str(declared).encode())])
        assert client.response(bad)["reset"] == ErrorCodes.PROTOCOL_ERROR
        gate.open(running)
        assert bytes(client.response(slow)["body"]) == b"fine"  # the stream in flight is untouched
        assert bytes(ok(client, "/after")["body"]) == b"fine"  # and the connection lives on
        assert not client.events_of(h2.events.ConnectionTerminated)
    assert wait_until(lambda: disconnects == ["/upload"])  # the app heard that its request died


def test_idle_connection_gets_goaway_after_the_keep_alive_timeout(serve):
    async def app(scope, receive, send):
        await respond(send, body=b"fine")

    running = serve(http_only(app), keep_alive_timeout=0.3)
    with H2Client(running.port) as client:
        ok(client)
        started = time.monotonic()
        client.wait_closed(5)
        first, goaway = client.events_of(h2.events.ConnectionTerminated)  # two-step, RFC 9113 §6.8
    assert first.last_stream_id == 2**31 - 1
    assert goaway.error_code == ErrorCodes.NO_ERROR and goaway.last_stream_id == 1
    # Below the 5 s defaults, so that the configured timeout closed it; loose for a loaded CI host.
    assert time.monotonic() - started < 4


def test_a_stream_in_flight_keeps_the_connection_past_the_keep_alive_timeout(serve):
    gate = Gate()
    arrivals = Arrivals()

    async def app(scope, receive, send):
        arrivals.arrive()
        await gate.wait()
        await respond(send, body=b"late but fine")

    # The client pings in a tight loop, thousands of times: far over the default PING budget.
    running = serve(http_only(app), keep_alive_timeout=0.2, h2_max_control_frames=1_000_000)
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/")
        assert arrivals.wait_for(1)
        deadline = time.monotonic() + 1.0  # five timeouts long: PINGs prove the connection lives
        while time.monotonic() < deadline:
            client.ping_barrier()
        assert not client.events_of(h2.events.ConnectionTerminated)
        gate.open(running)
        assert bytes(client.response(stream_id)["body"]) == b"late but fine"


def test_max_requests_per_connection_sends_goaway_after_the_last_stream_which_completes(serve):
    async def app(scope, receive, send):
        await respond(send, body=scope["path"].encode())

    running = serve(http_only(app), max_requests_per_connection=3)
    with H2Client(running.port) as client:
        bodies = [bytes(client.response(client.request("GET", f"/{n}"))["body"]) for n in range(3)]
        client.wait_closed(5)
        first, goaway = client.events_of(h2.events.ConnectionTerminated)
    assert bodies == [b"/0", b"/1", b"/2"]
    assert first.last_stream_id == 2**31 - 1
    assert goaway.error_code == ErrorCodes.NO_ERROR and goaway.last_stream_id == 5  # the third stream
    with H2Client(running.port) as fresh:  # the client reconnects and is served
        assert bytes(ok(fresh, "/again")["body"]) == b"/again"


def test_two_step_goaway_serves_a_stream_opened_before_the_ping_answer_and_refuses_later_ones(monkeypatch, serve):
    # Only our PING ACK may bring the final GOAWAY: the 1 s fallback could beat the in-flight stream.
    monkeypatch.setattr(lifecycle, "GOAWAY_ROUND_TRIP", 30.0)
    gate = Gate()
    arrivals = Arrivals()

    async def app(scope, receive, send):
        if scope["path"] == "/first":
            arrivals.arrive()
            await gate.wait()
        await respond(send, body=scope["path"].encode())

    # One request per connection: the first stream starts the graceful shutdown of the connection.
    running = serve(http_only(app), max_requests_per_connection=1)
    with H2Client(running.port) as client:
        conn = client.conn
        first = client.request("GET", "/first")
        assert arrivals.wait_for(1)
        # Read until the first GOAWAY (2^31-1) and its PING arrive, without answering yet.
        events: list = []
        while not any(isinstance(e, h2.events.PingReceived) for e in events):
            data = client.sock.recv(65536)
            assert data, "server closed the connection"
            events += conn.receive_data(data)
        (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway.last_stream_id == 2**31 - 1
        ping_ack = conn.data_to_send()  # h2 queued the PING ACK: hold it back
        in_flight = conn.get_next_available_stream_id()
        conn.send_headers(in_flight, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/in-flight"),
                                      (b":authority", b"localhost")], end_stream=True)
        client.responses[in_flight] = {"status": None, "headers": [], "body": bytearray(), "ended": False,
                                       "reset": None}
        client.sock.sendall(conn.data_to_send() + ping_ack)  # the new stream, then the PING answer
        client.wait_for(lambda: len(client.events_of(h2.events.ConnectionTerminated)) == 1)
        (final,) = client.events_of(h2.events.ConnectionTerminated)
        assert final.last_stream_id == in_flight  # served: it arrived before the round trip ended
        assert bytes(client.response(in_flight)["body"]) == b"/in-flight"
        late = client.request("GET", "/late")
        assert client.response(late)["reset"] == ErrorCodes.REFUSED_STREAM
        gate.open(running)
        assert bytes(client.response(first)["body"]) == b"/first"
        client.wait_closed(5)


def test_small_responses_complete_while_a_large_response_is_in_flight(serve):
    """Fairness: a 64 MiB download on a stream does not starve small ones on the same connection."""
    chunk = b"x" * (1024 * 1024)

    async def app(scope, receive, send):
        if scope["path"] == "/large":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(64):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await respond(send, body=b"small")

    running = serve(http_only(app))
    # Large windows, so that flow control does not pace the large stream for us.
    with H2Client(running.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}) as client:
        client.conn.increment_flow_control_window(2**30)
        client.flush()
        large = client.request("GET", "/large")
        client.wait_for(lambda: len(client.responses[large]["body"]) > 0)  # it is under way
        small = [client.request("GET", f"/small{n}") for n in range(10)]
        client.wait_for(lambda: all(client.responses[s]["ended"] for s in small))
        received_large = len(client.responses[large]["body"])
        assert all(bytes(client.responses[s]["body"]) == b"small" for s in small)
        assert received_large < 32 * 1024 * 1024, "the small responses waited for most of the large one"
        assert len(client.response(large, timeout=30)["body"]) == 64 * 1024 * 1024


def test_configured_windows_and_frame_size_are_advertised_and_honoured(serve):
    sizes: list[int] = []

    async def app(scope, receive, send):
        body = await read_body(receive)
        sizes.append(len(body))
        await respond(send, body=b"fine")

    running = serve(http_only(app), h2_initial_window_size=1024 * 1024, h2_max_frame_size=65536,
                    h2_connection_window_size=4 * 1024 * 1024)
    with H2Client(running.port) as client:
        settings = server_settings(client)
        assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 1024 * 1024
        assert settings[SettingCodes.MAX_FRAME_SIZE] == 65536
        client.wait_for(lambda: client.events_of(h2.events.SettingsAcknowledged))
        assert client.conn.outbound_flow_control_window == 4 * 1024 * 1024  # connection window
        # One 64 KiB DATA frame: accepted because the server said so (the RFC default is 16 KiB).
        stream_id = client.request("POST", "/", end_stream=False)
        client.conn.send_data(stream_id, b"x" * 65536, end_stream=True)
        client.flush()
        assert client.response(stream_id)["status"] == 200
    assert sizes == [65536]


def test_initial_window_below_the_rfc_default_is_refused():
    from plexicorn import Config, ConfigError
    # Until a client has our SETTINGS it may send 65535 bytes per stream (RFC 9113 §6.9.2).
    with pytest.raises(ConfigError, match="--h2-initial-window-size"):
        Config(h2_initial_window_size=16384)


@pytest.mark.parametrize("name, value", [(b":method", b"GE T"), (b":method", b"GET\r\n"), (b":path", b"/a\r\nx"),
                                         (b":path", b"/\x00"), (b":authority", b"x\r\nX-Injected: 1"),
                                         (b":authority", b" padded")])
def test_pseudo_header_values_are_checked_like_other_fields(serve, name, value):
    """RFC 9113 §8.2.1: a pseudo-header value with CR/LF/NUL or edge whitespace (or a method that
    is no token) is a malformed request: its stream is reset, the app never sees it, the
    connection goes on."""
    seen = []

    @http_only
    async def app(scope, receive, send):
        seen.append(scope["path"])
        await respond(send, body=b"ok")

    running = serve(app)
    with H2Client(running.port) as client:
        block = {b":method": b"GET", b":scheme": b"http", b":path": b"/", b":authority": b"localhost"}
        block[name] = value
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        client.conn.send_headers(stream_id, list(block.items()), end_stream=True)
        client.flush()
        client.responses[stream_id] = {"status": None, "headers": [], "body": bytearray(), "ended": False,
                                       "reset": None}
        assert client.response(stream_id)["reset"] == ErrorCodes.PROTOCOL_ERROR
        assert ok(client)["status"] == 200
    assert seen == ["/"]


@pytest.mark.parametrize("value", [b"abc", b"99"])
def test_content_length_in_request_trailers_is_a_stream_matter_on_any_stream(serve, value):
    """h2 checks a content-length again in trailers; neither on a connection's first request
    (h2's own path) nor on a later one (Plexicorn's fast path) may that fail the connection."""
    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await respond(send, body=b"done")

    running = serve(http_only(app))
    with H2Client(running.port) as client:
        outcomes = []
        for _ in range(2):  # the first request, then one on the fast path
            stream_id = client.request("POST", "/upload", body=b"hello", end_stream=False)
            client.conn.config.validate_outbound_headers = False
            client.conn.send_headers(stream_id, [(b"content-length", value)], end_stream=True)
            client.conn.config.validate_outbound_headers = True
            client.flush()
            response = client.response(stream_id)
            outcomes.append((response["status"], response["reset"]))
        ok(client, "/after")
        assert not client.events_of(h2.events.ConnectionTerminated)
    assert outcomes[0] == outcomes[1], outcomes
