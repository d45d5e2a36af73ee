"""Flood budgets: how much work a peer may make the server do without asking for anything useful.

A `Budget` is a token bucket: `capacity` events per `window` seconds, refilled continuously,
so a legitimate burst (a browser cancelling a page's requests) passes while a sustained flood
runs dry within a bounded number of events. Useful work (a completed response) may `earn`
tokens back, which turns the rate into a ratio of bad events per useful one.
"""

from __future__ import annotations

import time
from typing import Callable


class Budget:
    """A token bucket: `capacity` events per `window` seconds, refilled continuously."""

    __slots__ = ("capacity", "rate", "tokens", "stamp", "clock")

    def __init__(self, capacity: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window
        self.tokens = float(capacity)
        self.clock = clock
        self.stamp = clock()

    def spend(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens; False once the bucket is overdrawn (the flood is over budget)."""
        now = self.clock()
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens > self.capacity:
            tokens = self.capacity
        self.tokens = tokens - cost
        return self.tokens >= 0

    def earn(self, amount: float) -> None:
        """Give back `amount` tokens (never above the capacity) for useful work done."""
        tokens = self.tokens + amount
        self.tokens = tokens if tokens < self.capacity else self.capacity
