"""`wsgi.input` without sockets: the same bytes, cut into chunks every possible way, read back
the same by every reading method (lines spanning chunks, sizes across chunk ends)."""

from __future__ import annotations

import io

import pytest

from plexicorn.asgi.http import ClientDisconnected
from plexicorn.wsgi.bridge import RECEIVE
from plexicorn.wsgi.call import RequestInput

BODY = b"first line\nsecond\n\nlong " + b"x" * 50 + b"\nno newline at the end"


class ChunkFeed:
    """Stands for the bridge: answers RECEIVE with the next chunk, counting the asks."""

    def __init__(self, chunks: list[bytes], disconnect: bool = False) -> None:
        self.chunks = list(chunks)
        self.disconnect = disconnect
        self.asks = 0

    def ask(self, action: str, argument: object = None, *, wait: bool = True) -> dict:
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
