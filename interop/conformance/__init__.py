"""Frame-level HTTP/2 conformance cases (see base.py); importing this package registers them all."""

from . import connection, flow_control, frames, hpack, messages, streams  # noqa: F401  (they register their cases)
from .base import CASES, Target

__all__ = ["CASES", "Target"]
