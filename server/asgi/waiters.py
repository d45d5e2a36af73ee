"""The tasks blocked in one `receive()`: an event wakes every one of them.

An app may call `receive()` from several tasks at once (a body reader and anyio's
`is_disconnected` check, a timeout around one of them): a disconnect must reach them all,
and one of them being cancelled must not leave another without its wake-up.
"""

from __future__ import annotations

import asyncio


class Waiters:
    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    async def wait(self, future: asyncio.Future[None]) -> None:
        """Wait on `future` until `wake()`; a cancelled wait removes only its own future."""
        futures = self._futures
        futures.append(future)
        try:
            await future
        finally:
            if not future.done() or future.cancelled():
                try:
                    futures.remove(future)
                except ValueError:
                    pass  # wake() took it already

    @property
    def waiting(self) -> bool:
        return bool(self._futures)

    def wake(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)
