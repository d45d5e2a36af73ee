"""The whole server's metrics under a supervisor: the sum of its workers' snapshots.

Each worker sends its snapshot (cumulative, so a lost one costs nothing) every REPORT_INTERVAL
seconds and once more when it stops. A worker that is gone leaves its counters behind (so
that no total ever goes down, which Prometheus would take for a reset) and takes its gauges
with it (its connections and requests are gone too). The supervisor's own counters (worker
restarts) are added in.
"""

from __future__ import annotations

from typing import Any, Hashable

from .metrics import DEFINITIONS, GAUGES, SEP, Metrics

# Seconds between a worker's reports: the staleness of what a scrape sees of the workers.
REPORT_INTERVAL = 1.0

_NAMES = frozenset(d.name for d in DEFINITIONS) | {"request_duration_seconds_bucket",
                                                    "request_duration_seconds_sum"}
# A report is one line from one of our own workers; past this many samples it is not ours.
MAX_SAMPLES = 10_000


class Aggregate:
    def __init__(self, own: Metrics) -> None:
        self._own = own
        self._live: dict[Hashable, dict[str, float]] = {}
        self._retired: dict[str, float] = {}

    def update(self, worker: Hashable, snapshot: Any) -> bool:
        """A worker's latest snapshot; False (and ignored) if it is not one."""
        if (not isinstance(snapshot, dict) or len(snapshot) > MAX_SAMPLES
                or not all(isinstance(k, str) and k.partition(SEP)[0] in _NAMES
                           and isinstance(v, (int, float)) and not isinstance(v, bool)
                           for k, v in snapshot.items())):
            return False
        self._live[worker] = snapshot
        return True

    def retire(self, worker: Hashable) -> None:
        """The worker is gone: its counters stay in the totals, its gauges leave them."""
        snapshot = self._live.pop(worker, None)
        if snapshot is None:
            return
        retired = self._retired
        for sample, value in snapshot.items():
            if sample.partition(SEP)[0] not in GAUGES:
                retired[sample] = retired.get(sample, 0) + value

    def snapshot(self) -> dict[str, float]:
        total = dict(self._retired)
        for snapshot in (*self._live.values(), self._own.snapshot()):
            for sample, value in snapshot.items():
                total[sample] = total.get(sample, 0) + value
        return total
