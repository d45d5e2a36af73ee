"""The WSGI side without sockets: `wsgi.input` reads the same bytes, cut into chunks every
possible way, back as a file would; the thread-to-loop bridge never leaves a thread waiting."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest

from plexicorn.asgi.http import ClientDisconnected
from plexicorn.wsgi.bridge import RECEIVE, SEND, Bridge
from plexicorn.wsgi.call import RequestInput

BODY = b"first line\nsecond\n\nlong " + b"x" * 50 + b"\nno newline at the end"


class ChunkFeed:
    """Stands for the bridge: answers RECEIVE with the next chunk, counting the asks."""

    def __init__(self, chunks: list[bytes], disconnect: bool = False) -> None:
        self.chunks = list(chunks)
        self.disconnect = disconnect
        self.asks = 0

    def ask(self, action: str, argument: object = None) -> dict:
        assert action == RECEIVE
        self.asks += 1
        if not self.chunks:
            if self.disconnect:
                return {"type": "http.disconnect"}
            raise AssertionError("asked again after the end of the body")
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.disconnect}


def cuts(size: int):
    for step in (1, 3, 7, 11, 64, len(BODY)):
        yield [BODY[i:i + step] for i in range(0, len(BODY), step)] + ([b""] if step == 7 else [])


@pytest.mark.parametrize("chunks", list(cuts(len(BODY))), ids=lambda c: f"{len(c)}chunks")
def test_every_reading_method_gives_what_a_file_gives(chunks):
    for method in ("readline", "readlines", "iterate", "read", "read5", "mixed"):
        stream, reference = RequestInput(ChunkFeed(chunks)), io.BytesIO(BODY)
        if method == "readline":
            got = [stream.readline() for _ in range(7)]
            want = [reference.readline() for _ in range(7)]
        elif method == "readlines":
            got, want = stream.readlines(), reference.readlines()
        elif method == "iterate":
            got, want = list(stream), list(reference)
        elif method == "read":
            got, want = stream.read(), reference.read()
        elif method == "read5":
            got = [stream.read(5) for _ in range(len(BODY) // 5 + 2)]
            want = [reference.read(5) for _ in range(len(BODY) // 5 + 2)]
        else:
            got = [stream.readline(4), stream.read(8), stream.readline(), stream.readline(100), stream.read(-1)]
            want = [reference.readline(4), reference.read(8), reference.readline(), reference.readline(100),
                    reference.read(-1)]
        assert got == want, method


def test_reads_pull_one_chunk_at_a_time():
    feed = ChunkFeed([b"a" * 10, b"b" * 10, b"c" * 10])
    stream = RequestInput(feed)
    assert stream.read(4) == b"aaaa" and feed.asks == 1
    assert stream.read(6) == b"aaaaaa" and feed.asks == 1  # still the first chunk: no credit asked for
    assert stream.read(12) == b"b" * 10 + b"cc" and feed.asks == 3


def test_a_disconnect_while_reading_raises_oserror():
    stream = RequestInput(ChunkFeed([b"partial"], disconnect=True))
    assert stream.read(7) == b"partial"
    with pytest.raises(OSError) as raised:
        stream.read(1)
    assert isinstance(raised.value, ClientDisconnected)


def _ask_in_thread(bridge: Bridge, action: str, argument: object = None) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(bridge.ask(action, argument))
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_bridge_runs_asks_in_order_then_sends_what_the_call_returns():
    sent: list = []
    received: list = []

    async def receive():
        return {"type": "http.request", "body": b"in", "more_body": False}

    async def send(message):
        sent.append(message)

    async def main():
        loop = asyncio.get_running_loop()
        bridge = Bridge(loop)

        def call():
            received.append(bridge.ask(RECEIVE)["body"])
            bridge.ask(SEND, [{"n": 1}, {"n": 2}])
            return ({"n": 3},)  # the end of the response: sent after the call, by the loop
        await bridge.serve(receive, send, loop.run_in_executor(None, call))

    asyncio.run(main())
    assert received == [b"in"]
    assert sent == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_the_calls_exception_is_raised_by_serve():
    async def main():
        loop = asyncio.get_running_loop()

        def call():
            raise ValueError("from the app")
        await Bridge(loop).serve(None, None, loop.run_in_executor(None, call))

    with pytest.raises(ValueError, match="from the app"):
        asyncio.run(main())


def test_cancelled_serve_fails_the_waiting_ask_and_every_later_one():
    async def main():
        loop = asyncio.get_running_loop()
        bridge = Bridge(loop)
        receiving = asyncio.Event()
        outcomes: list = []

        async def receive():
            receiving.set()
            await asyncio.Event().wait()  # a body that never comes

        def call():
            for _ in range(2):
                try:
                    bridge.ask(RECEIVE)
                except OSError as exc:
                    outcomes.append(exc)
        thread = loop.run_in_executor(None, call)
        task = asyncio.ensure_future(bridge.serve(receive, None, thread))
        await receiving.wait()  # the thread waits on its first ask
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await thread  # the thread was not left waiting, on either ask
        return outcomes

    outcomes = asyncio.run(main())
    assert len(outcomes) == 2 and all(isinstance(exc, ClientDisconnected) for exc in outcomes)


def test_ask_on_a_closed_loop_raises_instead_of_waiting():
    loop = asyncio.new_event_loop()
    bridge = Bridge(loop)
    # Posted while the loop is open but never run: the loop closes under it.
    thread, outcome = _ask_in_thread(bridge, RECEIVE)
    deadline = time.monotonic() + 5
    while not loop._ready and time.monotonic() < deadline:  # noqa: SLF001 - the ask is queued
        time.sleep(0.001)
    loop.close()
    thread.join(5)
    assert not thread.is_alive() and isinstance(outcome[0], ClientDisconnected)
    # And asked after the close: at once.
    thread, outcome = _ask_in_thread(bridge, RECEIVE)
    thread.join(5)
    assert isinstance(outcome[0], ClientDisconnected)
