"""A file as the next piece of an HTTP/1.1 response body, written by the OS (zerocopysend)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import h11

from ..asgi.http import FILE_CHUNK, ClientDisconnected
from ..runtime.outbox import Outbox


class _FileRange:
    """Stands for the file bytes in h11's output: only its length matters to h11."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


async def send_file(conn: h11.Connection, outbox: Outbox, loop: asyncio.AbstractEventLoop,
                    transport: asyncio.Transport, file: Any, offset: int, count: int) -> int:
    """Frame `count` bytes of `file` with h11 and send them from the file; returns the bytes sent."""
    # h11 frames a body it never sees: it counts the placeholder's length (content-length,
    # chunk size) and hands it back among the framing bytes, where the file goes instead.
    placeholder = _FileRange(count)
    sent = 0
    for piece in conn.send_with_data_passthrough(h11.Data(data=placeholder)):  # type: ignore[arg-type]
        if piece is not placeholder:
            outbox.write(piece)
            continue
        outbox.write_now()  # the framing must precede the file on the socket
        sent = await _sendfile(outbox, loop, transport, file, offset, count)
    return sent


async def _sendfile(outbox: Outbox, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                    file: Any, offset: int, count: int) -> int:
    # Anything else written meanwhile (a 100 Continue) waits: the transport is the sendfile's.
    outbox.hold()
    try:
        # asyncio waits for the transport's buffer to empty, then os.sendfile (or read/write).
        sent = await loop.sendfile(transport, file, offset, count)
        outbox.sent_around(sent)
        return sent
    except NotImplementedError:
        pass  # uvloop has no loop.sendfile: copy through the outbox, reading off the loop
    finally:
        outbox.release()
    fd = file.fileno()
    sent = 0
    while sent < count:
        chunk = await loop.run_in_executor(None, os.pread, fd, min(FILE_CHUNK, count - sent), offset + sent)
        if not chunk:
            break
        if outbox.closed:
            raise ClientDisconnected("client disconnected")
        outbox.write(chunk)
        sent += len(chunk)
        await outbox.drain()
    file.seek(offset + sent)  # where loop.sendfile leaves it
    return sent
