"""Coalesced, back-pressured writes for one connection.

Every protocol action that produces bytes only marks the outbox dirty; the bytes
are written in a single `transport.write` on the next loop iteration. Writers that
outrun the peer wait in `drain()` until the transport's buffer empties.
"""

from __future__ import annotations

import asyncio
import math
from typing import Callable

from .closing import linger_close
from .services import Runtime

# Bytes gathered but not yet written beyond which `drain()` makes a sender wait.
HIGH_WATER = 64 * 1024


class Outbox:
    __slots__ = ("_runtime", "_transport", "_chunks", "_size", "_produce", "_scheduled",
                 "paused", "_drain_waiters", "_close_after_flush", "closed", "_held", "_sent", "_resumed_at")

    def __init__(self, runtime: Runtime, transport: asyncio.BaseTransport,
                 produce: Callable[[], bytes] | None = None, sent: Callable[[int], None] | None = None) -> None:
        self._runtime = runtime
        # Told the size of each write (the metrics' bytes sent): once per loop turn at most.
        self._sent = sent
        self._transport = transport
        self._chunks: list[bytes] = []
        self._size = 0
        # Called at flush time for bytes held elsewhere (the h2 connection's buffer).
        self._produce = produce
        self._scheduled = False
        self.paused = False  # the transport asked us to stop writing (read only: pause/resume)
        self._resumed_at = -math.inf  # Runtime.time() of the last resume()
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_after_flush = False
        self.closed = False
        self._held = False  # a sendfile owns the transport: writes wait for it

    def write(self, data: bytes) -> None:
        if data and not self.closed:
            self._chunks.append(data)
            self._size += len(data)
            if not self._scheduled:  # a response's second write finds its flush scheduled
                self.schedule()

    def schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self._runtime.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self.closed or self._held:
            return  # while held, release() flushes
        chunks = self._chunks
        if self._produce is not None:
            produced = self._produce()
            if produced:
                # The producer's bytes come first: they may hold the connection preface.
                chunks.insert(0, produced)
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = []
            self._size = 0
            self._transport.write(data)  # type: ignore[attr-defined]
            if self._sent is not None:
                self._sent(len(data))
        if self._close_after_flush:
            self.closed = True
            # TLS transports cannot half-close: their layer lingers on the raw socket itself.
            linger_close(self._transport, self._runtime.call_later)
            self._wake_drainers()
        elif not self.paused and self._drain_waiters:
            self._wake_drainers()

    def hold(self) -> None:
        """Keep gathered bytes back while something else writes to the transport (sendfile:
        asyncio refuses transport.write until it is done)."""
        self._held = True

    def release(self) -> None:
        self._held = False
        if self._chunks or self._close_after_flush or self._produce is not None:
            self.schedule()

    def write_now(self) -> None:
        """Hand the gathered bytes to the transport at once, ahead of a write that bypasses
        the outbox (sendfile); the scheduled flush then finds nothing left to write."""
        if self._chunks and not self.closed:
            data = b"".join(self._chunks)
            self._chunks = []
            self._size = 0
            self._transport.write(data)  # type: ignore[attr-defined]
            if self._sent is not None:
                self._sent(len(data))

    def sent_around(self, size: int) -> None:
        """`size` bytes went to the transport without the outbox (sendfile): counted as sent."""
        if self._sent is not None:
            self._sent(size)

    def close_after_flush(self) -> None:
        """Write what is gathered, then close the transport."""
        self._close_after_flush = True
        self.schedule()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._resumed_at = self._runtime.time()
        self._wake_drainers()

    def paused_within(self, seconds: float) -> bool:
        """Whether the peer left our writes unread (and so its connection held reading) at some
        moment of the last `seconds`. A connection that resumes does not read at once, and may
        pause again before it does: only a whole period unpaused gave the peer its chance."""
        return self.paused or self._runtime.time() - self._resumed_at < seconds

    def connection_lost(self) -> None:
        self.closed = True
        self._chunks = []
        self._wake_drainers()

    async def drain(self) -> None:
        """Wait while the peer is not keeping up with what was written."""
        if (self.paused or self._size > HIGH_WATER) and not self.closed:
            waiter = self._runtime.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
