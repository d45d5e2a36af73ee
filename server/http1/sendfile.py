"""A file as the next piece of an HTTP/1.1 response body, written by the OS (zerocopysend)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..asgi.http import FILE_CHUNK, ClientDisconnected
from ..runtime.outbox import Outbox
from .codec import HTTP1Codec


async def send_file(codec: HTTP1Codec, outbox: Outbox, loop: asyncio.AbstractEventLoop,
                    transport: asyncio.Transport, file: Any, offset: int, count: int) -> int:
    """Frame `count` bytes of `file` with the codec and send them from the file; returns the bytes sent."""
    before, after = codec.file_framing(count)
    if before:
        outbox.write(before)
    outbox.write_now()  # the framing must precede the file on the socket
    sent = await _sendfile(outbox, loop, transport, file, offset, count)
    if after:
        outbox.write(after)
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
