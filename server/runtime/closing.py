"""Closing a connection after its last bytes, the same for TCP (the outbox) and TLS (its layer).

Closing a socket that still has unread input makes the kernel send a reset, which can destroy
what was just written (a 400, a GOAWAY, a TLS alert) before the peer reads it. So the closing
side half-closes, keeps reading (and dropping) input for up to LINGER seconds, then closes.

The peer may already be gone when we get there: `shutdown(SHUT_WR)` then fails with ENOTCONN
(asyncio raises it from `write_eof`). That is the normal end of a connection, not an error:
the transport is aborted, so `connection_lost` still comes and nothing waits on a dead socket.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

# Seconds a closing connection keeps reading (and dropping) input after its last bytes.
LINGER = 1.0

CallLater = Callable[[float, Callable[[], Any]], asyncio.TimerHandle]


def linger_close(transport: asyncio.BaseTransport, call_later: CallLater) -> asyncio.TimerHandle | None:
    """Half-close `transport` and close it LINGER seconds later; the caller drops input meanwhile.

    Returns the timer of the final close, or None if the transport was closed or aborted at once
    (no half-close on it, or the peer already gone).
    """
    if not transport.can_write_eof():  # type: ignore[attr-defined]
        transport.close()
        return None
    try:
        transport.write_eof()  # type: ignore[attr-defined]
    except OSError:
        transport.abort()  # ENOTCONN: the peer reset the connection; nothing can reach it now
        return None
    transport.resume_reading()  # type: ignore[attr-defined]  # the protocol may have paused it
    return call_later(LINGER, transport.close)
