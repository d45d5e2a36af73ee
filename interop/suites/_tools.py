"""Running external tools: one helper so every suite reports failures the same way."""

from __future__ import annotations

import subprocess

from ..runner import CaseFailed


def run_tool(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd`; a non-zero exit or a timeout is a CaseFailed carrying the end of its output."""
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CaseFailed(f"{cmd[0]} to finish within {timeout:.0f} s", "timeout") from None
    if done.returncode != 0:
        raise CaseFailed(f"{cmd[0]} to exit 0", f"exit {done.returncode}: {tail(done)}")
    return done


def tail(done: subprocess.CompletedProcess[bytes], lines: int = 5) -> str:
    text = (done.stdout + b"\n" + done.stderr).decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-lines:])
