"""Stand-ins for the socket and the clock, to drive a protocol object without either
(the `Runtime` seam: runtime/services.py)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from plexicorn.runtime.services import Runtime


class Timer:
    def __init__(self, delay: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.delay, self.callback, self.args = delay, callback, args
        self.cancelled = False
        self.deadline = delay  # ManualTimers.time() when it is due

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimers(Runtime):
    """The running loop's callbacks and tasks, but timers that only fire when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[Timer] = []
        self.now = 0.0  # the clock a timer reads: it moves only when the test fires timers

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        timer = Timer(delay, callback, args)
        timer.deadline = self.now + delay
        self.timers.append(timer)
        return timer

    def fire(self, delay: float) -> None:
        """Run the pending timers set for `delay` seconds."""
        due = [t for t in self.timers if t.delay == delay and not t.cancelled]
        assert due, f"no pending {delay} s timer"
        self.now = max(self.now, *(timer.deadline for timer in due))
        for timer in due:
            self.timers.remove(timer)
            timer.callback(*timer.args)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
