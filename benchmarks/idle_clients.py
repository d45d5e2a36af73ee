"""Hold HTTP/2 connections open so run.py can read the server's memory with them in place.

    python benchmarks/idle_clients.py --port 8443 --tls --connections 10000
    python benchmarks/idle_clients.py --port 8443 --tls --streams 100 --path /wait

`--connections N`: N connections, each with the client preface, an empty SETTINGS and a SETTINGS
ACK, then nothing: idle. `--streams N`: one connection with N GET requests whose app waits
(`/wait` in app.py answers the headers and then waits for the client to go away); ready once
the N response HEADERS arrived, so every stream is open at the server.

Prints `ready OPEN FAILED` on stdout once everything is open, then holds the connections until
stdin closes (run.py reads the server's RSS in between). Its own process, pinned to the load
generator's core by run.py, so opening 10,000 TLS connections does not share the server's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import ssl
import struct
import sys

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS, PING, GOAWAY = 0x4, 0x1, 0x6, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    payload = await reader.readexactly(length)
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload


def tls_context() -> ssl.SSLContext:
    # Not create_default_context(): it loads the system CA store, which nothing here verifies
    # against; one context for all connections (building one costs milliseconds).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a throw-away certificate
    context.set_alpn_protocols(["h2"])
    return context


TLS_CONTEXT = tls_context()


async def open_connection(host: str, port: int, tls: bool):
    reader, writer = await asyncio.open_connection(
        host, port, ssl=TLS_CONTEXT if tls else None, limit=1 << 20)
    if tls:
        negotiated = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        if negotiated != "h2":
            writer.close()
            raise ConnectionError(f"ALPN gave {negotiated!r}, not h2")
    # Empty SETTINGS; then the ACK for the server's SETTINGS, its first frame, once it came (an
    # ACK before it is a protocol error to a strict server).
    writer.write(PREFACE + frame(SETTINGS, 0, 0))
    await writer.drain()
    kind, flags, _stream, _payload = await read_frame(reader)
    if kind != SETTINGS or flags & ACK:
        writer.close()
        raise ConnectionError(f"the server's first frame was of type {kind}, not SETTINGS")
    writer.write(frame(SETTINGS, ACK, 0))
    await writer.drain()
    return reader, writer


async def idle_connections(host: str, port: int, tls: bool, count: int, parallel: int,
                           deadline: float):
    # Bounded handshakes in flight: a server on one core that accepts hundreds at once finishes
    # none of them in time (its handshake timeout then resets them); clients arrive in waves.
    gate = asyncio.Semaphore(parallel)
    held, failures = [], {}

    async def one():
        async with gate:
            try:
                held.append(await asyncio.wait_for(open_connection(host, port, tls), 15))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                reason = type(exc).__name__
                failures[reason] = failures.get(reason, 0) + 1

    # A server that stops accepting (a connection limit) must not hold us for hours: whatever is
    # not open by the deadline counts as failed.
    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    _done, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    if pending:
        failures["not open by --deadline"] = len(pending)
    if failures:
        print("failed: " + ", ".join(f"{n} {reason}" for reason, n in failures.items()),
              file=sys.stderr, flush=True)
    return held, sum(failures.values())


async def open_streams(host: str, port: int, tls: bool, count: int, path: str):
    reader, writer = await open_connection(host, port, tls)
    encoder = hpack.Encoder()
    authority = f"{host}:{port}"
    for index in range(count):
        block = encoder.encode([(":method", "GET"), (":scheme", "https" if tls else "http"),
                                (":path", path), (":authority", authority)])
        writer.write(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * index, block))
    await writer.drain()
    answered: set[int] = set()
    refused, reasons = 0, {}
    while len(answered) + refused < count:
        kind, flags, stream, payload = await read_frame(reader)
        if kind == HEADERS and stream:
            answered.add(stream)
        elif kind == 0x3:  # RST_STREAM: the server refused or failed that stream
            refused += 1
            code = int.from_bytes(payload[:4], "big")
            reasons[code] = reasons.get(code, 0) + 1
        elif kind == SETTINGS and not flags & ACK:
            writer.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            writer.write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            print(f"GOAWAY code {int.from_bytes(payload[4:8], 'big')}", file=sys.stderr)
            break
    if reasons:
        print("reset: " + ", ".join(f"{n} with code {code}" for code, n in reasons.items()),
              file=sys.stderr, flush=True)
    # Nothing more is read: the streams stay open at the server while the connection is held.
    return [(reader, writer)], count - len(answered)


async def main_async(args) -> int:
    if args.streams:
        held, failed = await asyncio.wait_for(
            open_streams(args.host, args.port, args.tls, args.streams, args.path), 60)
        opened = args.streams - failed
    else:
        held, failed = await idle_connections(args.host, args.port, args.tls, args.connections,
                                              args.parallel, args.deadline)
        opened = len(held)
    print(f"ready {opened} {failed}", flush=True)
    # Hold everything until run.py closes our stdin.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for _reader, writer in held:
        writer.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true", help="TLS with ALPN h2 (else h2c prior knowledge)")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=32, help="handshakes in flight at once")
    parser.add_argument("--deadline", type=float, default=300,
                        help="seconds to open all connections; the rest count as failed")
    parser.add_argument("--streams", type=int, default=0, help="one connection with this many open streams")
    parser.add_argument("--path", default="/wait")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.connections + 64 > hard and not args.streams:
        print(f"error: {args.connections} connections need more than the open-file limit {hard}",
              file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(args))
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
