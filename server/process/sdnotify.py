"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET per state change.

READY=1 once serving, RELOADING=1 during a rolling restart, STOPPING=1 at shutdown and
WATCHDOG=1 every half $WATCHDOG_USEC. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

logger = logging.getLogger("plexicorn.error")

# What a worker process must not see: the service manager talks to the main process only.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def notify(*states: str) -> bool:
    """Send `states` (e.g. "READY=1", "STATUS=serving") to the service manager, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError as exc:
        logger.warning("sd_notify to %s failed: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


def reloading() -> bool:
    """RELOADING=1 with the MONOTONIC_USEC that Type=notify-reload services must send with it."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half the service's WatchdogSec), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


async def keep_watchdog_fed() -> None:
    """WATCHDOG=1 from the event loop while it runs: a blocked loop starves it, and systemd acts."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
