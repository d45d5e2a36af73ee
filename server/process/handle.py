"""The supervisor's handle on one worker process, and what a worker's exit status means."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from typing import Any, AsyncIterator


@dataclasses.dataclass(eq=False)
class Worker:
    """The supervisor's handle on one worker process."""

    slot: int  # 1..N, kept by its replacements
    process: asyncio.subprocess.Process
    channel: asyncio.StreamWriter
    ready: asyncio.Future[None]  # done once serving, or failed with the worker's start-up error
    unanswered: float | None = None  # when the oldest ping it has not answered yet was sent
    stopping: bool = False  # told to stop: its exit is expected
    replacing: bool = False  # its replacement is starting
    hung: bool = False  # killed for not answering the heartbeat
    failure: BaseException | None = None
    watcher: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def __str__(self) -> str:
        return f"Worker {self.slot} (pid {self.pid})"

    @property
    def serving(self) -> bool:
        return self.ready.done() and self.ready.exception() is None and not self.stopping

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def send(self, **message: Any) -> None:
        if not self.channel.is_closing():
            self.channel.write(json.dumps(message).encode() + b"\n")


async def messages(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """A worker's messages until its end closes (a killed worker's end may reset)."""
    while True:
        try:
            line = await reader.readline()
        except ConnectionError:
            return
        if not line:
            return
        yield json.loads(line)


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
