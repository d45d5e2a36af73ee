"""The HTTP/2 DATA send path end to end, over TLS: frames as large as the peer's
SETTINGS_MAX_FRAME_SIZE allows and never larger, windows honoured to the byte, and bodies made of
chunks that do not line up with frames arriving intact, in order."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess

import h2.events
import pytest
from h2.settings import SettingCodes

from h2client import H2Client

KIB = 1024
MIB = 1024 * KIB
BIG_WINDOW = 2**31 - 1


def payload_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def streaming_app(payload: bytes, chunk: int):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for offset in range(0, len(payload), chunk):
            await send({"type": "http.response.body", "body": payload[offset:offset + chunk], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


def data_frames(client: H2Client, stream_id: int) -> list[int]:
    """The length of every DATA frame received on the stream, in order (h2: one event per frame)."""
    return [e.flow_controlled_length for e in client.events_of(h2.events.DataReceived) if e.stream_id == stream_id]


@pytest.mark.parametrize("peer_max_frame", [16 * KIB, MIB])
def test_data_frames_are_as_large_as_the_peer_allows_and_no_larger(serve, client_ssl_context, peer_max_frame):
    # 40000-byte chunks: frame and chunk boundaries do not line up.
    payload = payload_of(3 * MIB + 12345, seed=peer_max_frame)
    running = serve(streaming_app(payload, 40000), tls=True)
    settings = {SettingCodes.MAX_FRAME_SIZE: peer_max_frame, SettingCodes.INITIAL_WINDOW_SIZE: BIG_WINDOW}
    with H2Client(running.port, ssl_context=client_ssl_context(), settings=settings) as client:
        client.conn.increment_flow_control_window(BIG_WINDOW - 65535)
        client.flush()
        stream_id = client.request("GET", "/")
        response = client.response(stream_id, timeout=30)
        frames = data_frames(client, stream_id)
    assert response["status"] == 200
    assert hashlib.sha256(response["body"]).digest() == hashlib.sha256(payload).digest()
    assert max(frames) <= peer_max_frame  # h2 on the client refuses larger ones too
    assert max(frames) > 16 * KIB if peer_max_frame > 16 * KIB else max(frames) == 16 * KIB
    assert 0 not in frames[:-1]  # only the last frame may be empty (END_STREAM)


def test_large_frames_stop_at_the_stream_window_exactly(serve, client_ssl_context):
    payload = payload_of(MIB, seed=7)
    running = serve(streaming_app(payload, 64 * KIB), tls=True)
    settings = {SettingCodes.MAX_FRAME_SIZE: MIB, SettingCodes.INITIAL_WINDOW_SIZE: 100_000}
    with H2Client(running.port, ssl_context=client_ssl_context(), settings=settings, auto_window=False) as client:
        client.conn.increment_flow_control_window(BIG_WINDOW - 65535)
        client.flush()
        stream_id = client.request("GET", "/")
        entry = client.responses[stream_id]
        client.wait_for(lambda: len(entry["body"]) >= 100_000)
        client.ping_barrier()
        # The client's h2 would have failed the connection on a byte beyond the window.
        assert len(entry["body"]) == 100_000
        assert max(data_frames(client, stream_id)) > 16 * KIB
        client.conn.increment_flow_control_window(50_000, stream_id)
        client.flush()
        client.wait_for(lambda: len(entry["body"]) >= 150_000)
        client.ping_barrier()
        assert len(entry["body"]) == 150_000
        client.conn.increment_flow_control_window(BIG_WINDOW - 150_000, stream_id)
        client.flush()
        response = client.response(stream_id, timeout=30)
    assert bytes(response["body"]) == payload


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
def test_h2load_streams_and_echoes_over_tls_with_every_byte_accounted(serve, tmp_path):
    # Several connections and streams at once, each response 1 MiB, and 16 KiB uploads echoed.
    payload = payload_of(MIB, seed=3)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/echo":
            body = bytearray()
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            await send({"type": "http.response.start", "status": 200 if bytes(body) == upload else 500,
                        "headers": []})
            await send({"type": "http.response.body", "body": bytes(body)})
        else:
            await streaming_app(payload, 64 * KIB)(scope, receive, send)

    upload = payload_of(16 * KIB, seed=4)
    body_file = tmp_path / "body.bin"
    body_file.write_bytes(upload)
    running = serve(app, tls=True)
    url = f"https://127.0.0.1:{running.port}"
    streamed = subprocess.run(["h2load", "-n", "24", "-c", "3", "-m", "4", url + "/stream"],
                              capture_output=True, text=True, timeout=120).stdout
    assert "24 succeeded" in streamed and "24 2xx" in streamed, streamed
    assert f"({24 * MIB}) data" in streamed, streamed  # h2load's count of response body bytes
    echoed = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "8", "-d", str(body_file), url + "/echo"],
                            capture_output=True, text=True, timeout=120).stdout
    assert "200 succeeded" in echoed and "200 2xx" in echoed, echoed
