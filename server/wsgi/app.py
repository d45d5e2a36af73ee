"""`WSGIApp`: a WSGI application as an ASGI 3 one, each call in a bounded thread pool.

At most `threads` calls run at once. A request beyond them waits in the loop for a slot, holding
no thread and reading none of its body (its HTTP/2 window or HTTP/1.1 reading stays as the
connection left it), and other connections are served meanwhile. The pool's threads are the
only ones that run the app; the loop never waits for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any, Callable

from .bridge import Bridge
from .call import FileWrapper, RequestInput, WSGICall
from .environ import build_environ


class WSGIApp:
    """Serve `app` (PEP 3333) through the ASGI `http` call; other scope types are refused."""

    interface_name = "WSGI"  # for the server's log lines

    def __init__(self, app: Callable[..., Any], *, threads: int, multiprocess: bool) -> None:
        self.app = app
        self.threads = threads
        self.multiprocess = multiprocess
        self._slots: asyncio.Semaphore | None = None  # made on the serving loop
        self._pool: ThreadPool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                # WSGI has no WebSocket: refuse the handshake (403) as an ASGI app that does not accept.
                await send({"type": "websocket.close"})
                return
            raise RuntimeError(f"a WSGI app cannot serve {scope['type']!r} scopes")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.threads)
            self._pool = ThreadPool(self.threads)
        async with self._slots:
            loop = asyncio.get_running_loop()
            bridge = Bridge(loop)
            environ = build_environ(scope, wsgi_input=RequestInput(bridge), multiprocess=self.multiprocess,
                                    file_wrapper=FileWrapper)
            call = WSGICall(bridge, scope)
            assert self._pool is not None
            thread = asyncio.wrap_future(self._pool.submit(call.run, self.app, environ), loop=loop)
            await bridge.serve(receive, send, thread)

    def shutdown(self) -> None:
        """The server has stopped: the threads end once their calls return (every bridge ask
        now fails, so a call still running cannot wait on the loop)."""
        if self._pool is not None:
            self._pool.shutdown()


class ThreadPool:
    """`size` daemon threads taking calls from one queue, each call's outcome in a Future."""

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"plexicorn-wsgi-{index}", daemon=True)
                         for index in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, function, args))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = function(*args)
            except BaseException as exc:  # the call's outcome, raised again on the loop
                future.set_exception(exc)
            else:
                future.set_result(result)
            del job, future, function, args  # no reference to the call's objects while idle
