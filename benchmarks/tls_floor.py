"""What sending bytes over TLS costs on this machine with Python's ssl module and nothing else,
next to what Plexicorn spends per MiB of a streamed HTTP/2 response: the floor under the
`h2-tls-stream` scenario of run.py.

Each design encrypts and sends `--mib` MiB in writes of `--write-size` bytes (default: the HTTP/2
scheduler's flush budget, 256 KiB) from this process, pinned to the first CPU, to a TLS client
that reads and decrypts them on the second. The figure is this process's CPU time per MiB,
handshake included. On loopback the sender's send() also runs part of the receiving TCP path,
and a slower reader means more waits for the socket, so the client is not wholly out of it.

- `bio`: an SSLObject over memory BIOs, its records read out and sent on a non-blocking socket:
  the design of Plexicorn's TLS transport (tls/transport.py), which needs it for the PROXY
  protocol, SNI, live certificate reload and lingering close.
- `socket`: an SSLSocket that encrypts straight into the socket (OpenSSL's socket BIO): two
  copies and the memory BIO's memset fewer.
- `plexicorn` (with `--plexicorn`): a Plexicorn server process serving benchmarks/app.py's
  /stream (1 MiB in 64 KiB sends) to `h2load -n N -c 4 -m 4`, CPU of the server per MiB served.

    python benchmarks/tls_floor.py                      # both designs, 2 GiB each
    python benchmarks/tls_floor.py --rounds 3 --plexicorn
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: import the sibling modules as `benchmarks.*`
    sys.path.insert(0, str(REPO))

from benchmarks.loadgen import parse_h2load  # noqa: E402
from benchmarks.run import make_certificate  # noqa: E402
from benchmarks.servers import placement, pinned, running_server, tree_cpu_seconds  # noqa: E402

MIB = 1 << 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=2048, help="MiB sent per design and round (2048)")
    parser.add_argument("--write-size", type=int, default=256 * 1024,
                        help="bytes per SSL write (262144: the HTTP/2 flush budget)")
    parser.add_argument("--design", action="append", choices=["bio", "socket"],
                        help="only this design (repeatable; default both)")
    parser.add_argument("--plexicorn", action="store_true",
                        help="also measure a Plexicorn server on /stream with h2load")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement (1)")
    # Internal: this script as the reading side, on the given port, for the given byte count.
    parser.add_argument("--client", type=int, nargs=2, metavar=("PORT", "BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mib < 1 or args.write_size < 1 or args.rounds < 1:
        parser.error("--mib, --write-size and --rounds must be at least 1")
    if args.plexicorn and args.client is None and shutil.which("h2load") is None:
        parser.error("--plexicorn needs h2load (apt-get install nghttp2-client)")
    return args


def client(port: int, total: int) -> None:
    """Read and decrypt `total` bytes, then close: the other end of every design."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port))) as sock:
        buffer = bytearray(MIB)
        received = 0
        while received < total:
            count = sock.recv_into(buffer)
            if not count:
                raise SystemExit(f"the server closed after {received} of {total} bytes")
            received += count


def send_over_bio(context: ssl.SSLContext, raw: socket.socket, payload: bytes, writes: int) -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:  # the handshake, on the blocking socket
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                raw.sendall(outgoing.read())
            data = raw.recv(65536)
            if not data:
                raise SystemExit("the client left during the handshake") from None
            incoming.write(data)
    if outgoing.pending:
        raw.sendall(outgoing.read())
    raw.setblocking(False)
    for _ in range(writes):
        tls.write(payload)
        view = memoryview(outgoing.read())
        while view:
            try:
                view = view[raw.send(view):]
            except BlockingIOError:
                select.select([], [raw], [])


def send_over_socket(context: ssl.SSLContext, raw: socket.socket, payload: bytes, writes: int) -> None:
    with context.wrap_socket(raw, server_side=True) as tls:  # blocking handshake; owns the fd now
        tls.setblocking(False)
        for _ in range(writes):
            while True:
                try:
                    tls.send(payload)  # all of it: CPython's SSL_write does not write partially
                    break
                except ssl.SSLWantWriteError:
                    select.select([], [tls], [])  # retried with the same buffer, as OpenSSL requires


def measure_design(design: str, context: ssl.SSLContext, args, cpus) -> float:
    """Server CPU seconds per MiB of one design."""
    writes = max(1, args.mib * MIB // args.write_size)
    payload = os.urandom(args.write_size)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(30)  # a reader that dies before connecting must not hang the run
        reader = subprocess.Popen(
            [sys.executable, __file__, "--client", str(listener.getsockname()[1]), str(writes * args.write_size)],
            preexec_fn=pinned(cpus[1]))
        try:
            raw, _ = listener.accept()
            raw.settimeout(None)
            with raw:
                start = time.process_time()
                if design == "bio":
                    send_over_bio(context, raw, payload, writes)
                else:
                    send_over_socket(context, raw, payload, writes)
                spent = time.process_time() - start
            status = reader.wait(timeout=120)
        except BaseException:
            reader.kill()  # the sender's error is the one to show, not the reader's
            reader.wait()
            raise
    if status != 0:
        raise SystemExit(f"the reading client failed with status {status}")
    return spent / (writes * args.write_size / MIB)


def measure_plexicorn(tls_files, work: Path, args, cpus) -> float:
    requests = max(16, args.mib)  # each a 1 MiB response
    with running_server("Plexicorn", "benchmarks.app:app", tls_files, work, cpus[0]) as server:
        before = tree_cpu_seconds(server.process.pid)
        result = subprocess.run(["h2load", "-n", str(requests), "-c", "4", "-m", "4",
                                 server.base_url + "/stream"], capture_output=True, text=True,
                                preexec_fn=pinned(cpus[1]), timeout=600)
        spent = tree_cpu_seconds(server.process.pid) - before
    parsed = parse_h2load(result.stdout, "h2")
    if not parsed.ok or f"{requests} succeeded" not in result.stdout:
        raise SystemExit(f"h2load did not get every response over h2 ({parsed.note or f'{parsed.errors} failed'}):\n"
                         + result.stdout[-2000:])
    return spent / requests


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client is not None:
        client(*args.client)
        return 0
    server_cpus, load_cpus = placement()
    cpus = (server_cpus, load_cpus)
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)
    designs = args.design or ["bio", "socket"]
    with tempfile.TemporaryDirectory(prefix="plexicorn-tls-floor-") as tmp:
        tls_files = make_certificate(Path(tmp))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, tls_files))
        print(f"{args.mib} MiB per measurement in {args.write_size:,}-byte writes, {ssl.OPENSSL_VERSION}; "
              f"server on CPU {sorted(server_cpus) if server_cpus else 'any'}, "
              f"client on {sorted(load_cpus) if load_cpus else 'any'}")
        labels = {"bio": "memory BIO, then send (Plexicorn's TLS transport)",
                  "socket": "SSLSocket, straight into the socket",
                  "plexicorn": "Plexicorn, HTTP/2 TLS GET /stream, h2load 4x4"}
        for round_number in range(1, args.rounds + 1):
            figures = {design: measure_design(design, context, args, cpus) for design in designs}
            if args.plexicorn:
                figures["plexicorn"] = measure_plexicorn(tls_files, Path(tmp), args, cpus)
            for key, seconds in figures.items():
                prefix = f"round {round_number}  " if args.rounds > 1 else ""
                # The server's CPU is counted in clock ticks: a tiny run may show none.
                rate = f"{1 / seconds:,.0f} MiB/s for one busy core" if seconds > 0 else "too short to tell"
                print(f"{prefix}{labels[key]:52} {seconds * 1000:6.3f} ms CPU per MiB  ({rate})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
