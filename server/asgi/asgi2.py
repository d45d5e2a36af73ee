"""Legacy ASGI 2 applications (`app(scope)` returns a coroutine callable taking (receive, send))."""

from __future__ import annotations

from typing import Any, Callable


class ASGI2App:
    """An ASGI 2 application (a class built from the scope, or a callable taking it) as ASGI 3."""

    def __init__(self, app: Callable[[dict[str, Any]], Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)
