"""The hand-off between a WSGI call's thread and the loop task that serves its request.

The thread asks (`receive`, or `send` a few ASGI messages) and waits for the answer; the loop
task (`Bridge.serve`) runs each ask in order with the request's ASGI `receive`/`send`, so the cycle's flow control and bounded send buffers hold the thread back
exactly as they hold back an ASGI app. One ask costs one `call_soon_threadsafe` (a loop wake-up)
and one thread wake-up; a whole body chunk travels in each. The messages that end the response
are the thread's return value, sent once the call is over: a one-chunk response (a list) costs
no ask at all, a streamed one an ask per chunk.

Nothing can leave the thread blocked for good: a client that goes away makes `receive` answer
`http.disconnect` and `send` raise `ClientDisconnected`, and once the loop task ends (the call
was cancelled, the server stops) every pending and later ask raises `ClientDisconnected`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from typing import Any, Awaitable, Callable

from ..asgi.http import ClientDisconnected

RECEIVE = "receive"
SEND = "send"

_Ask = tuple[str, Any, "concurrent.futures.Future[Any]"]


class Bridge:
    __slots__ = ("_loop", "_asks", "_wakeup", "_closed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._asks: deque[_Ask] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False

    # -- the WSGI thread's side -------------------------------------------------------------
    def ask(self, action: str, argument: Any = None) -> Any:
        """Run `receive()` (RECEIVE) or `send(m)` for each message of `argument` (SEND) on the
        loop; block this thread until done and return (or raise) its outcome."""
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._loop.call_soon_threadsafe(self._post, (action, argument, reply))
        except RuntimeError:  # the loop is closed: the server is gone
            raise ClientDisconnected("server stopped") from None
        while True:
            try:
                return reply.result(timeout=1.0)
            except TimeoutError:
                if reply.done():
                    raise  # the ask's own outcome
                # Normally the loop answers or refuses every ask; a loop closed under an ask it
                # had not yet run (the process is ending) would leave this thread waiting.
                if self._loop.is_closed():
                    raise ClientDisconnected("server stopped") from None

    # -- the loop's side ----------------------------------------------------------------------
    def _post(self, ask: _Ask) -> None:
        if self._closed:
            _refuse(ask)
            return
        self._asks.append(ask)
        self._wake()

    def _wake(self, _: Any = None) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def serve(self, receive: Callable[[], Awaitable[dict[str, Any]]],
                    send: Callable[[dict[str, Any]], Awaitable[None]], call: asyncio.Future[Any]) -> None:
        """Answer the thread's asks until `call` (the thread's whole run) is done, then send the
        messages it returned: the end of the response, which needs no thread waiting for it."""
        call.add_done_callback(self._wake)
        asks = self._asks
        reply: concurrent.futures.Future[Any] | None = None
        try:
            while True:
                while asks:
                    action, argument, reply = asks.popleft()
                    try:
                        if action == RECEIVE:
                            result = await receive()
                        else:
                            for message in argument:
                                await send(message)
                            result = None
                    except Exception as exc:
                        reply.set_exception(exc)
                    else:
                        reply.set_result(result)
                    reply = None
                # Asks posted before the thread ended were queued before `call` completed.
                if call.done():
                    break
                self._wakeup = self._loop.create_future()
                await self._wakeup
        except BaseException:
            # Cancelled (the server stops, the connection is torn down): the thread must not
            # wait. It goes on to its close(); its outcome, now nobody's, is collected silently.
            if reply is not None and not reply.done():
                reply.set_exception(ClientDisconnected("server stopped"))
            call.add_done_callback(_collect)
            raise
        finally:
            # Asks after the end (a thread the app started that still reads wsgi.input) fail.
            self._closed = True
            while asks:
                _refuse(asks.popleft())
        for message in call.result():  # raises what the call raised
            await send(message)


def _collect(call: asyncio.Future[Any]) -> None:
    if not call.cancelled():
        call.exception()


def _refuse(ask: _Ask) -> None:
    reply = ask[2]
    if not reply.done():
        reply.set_exception(ClientDisconnected("server stopped"))
