"""The benchmark's output: the machine, the tables (plain text and Markdown), the JSON document.

Nothing here measures; `run.py` hands over `{(scenario key, server name): Result}`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path

from benchmarks.loadgen import Result
from benchmarks.servers import HAVE_UVLOOP, SPECS, placement

DASH = "–"


def machine() -> dict:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if cpu == "unknown CPU":
        cpu = platform.processor() or cpu
    # Like nproc: the CPUs this process may run on, which can be fewer than installed.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    server_cpus, load_cpus = placement()
    tools = {}
    for tool, flag in (("h2load", "--version"), ("wrk", "-v")):
        if shutil.which(tool):
            done = subprocess.run([tool, flag], capture_output=True, text=True)
            out = (done.stdout + done.stderr).strip()
            tools[tool] = out.splitlines()[0] if out else tool
        else:
            tools[tool] = "not installed"
    loop = "asyncio (uvloop not installed)"
    if HAVE_UVLOOP:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    return {
        "cpu": cpu, "cpus": cpus, "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "loop": loop,
        "placement": (f"server on CPU {sorted(server_cpus)}, load generator on CPU {sorted(load_cpus)}"
                      if server_cpus else "not pinned (fewer than 2 CPUs)"),
        "servers": {s.name: s.version() for s in SPECS.values()},  # the baseline too, if any
        "tools": tools,
    }


def machine_lines(info: dict) -> list[str]:
    return [
        f"Machine: {info['cpus']} CPU(s), {info['cpu']}; {info['os']}; {info['placement']}",
        f"Python {info['python']}, event loop: {info['loop']}",
        "Servers: " + ", ".join(f"{name} {version}" for name, version in info["servers"].items()),
        "Tools: " + "; ".join(info["tools"].values()),
    ]


def format_latency(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def format_rate(result: Result | None) -> str:
    if result is None or result.rate is None:
        return DASH
    return f"{result.rate:,.1f}" if result.rate < 100 else f"{result.rate:,.0f}"


def ratio(plexi: Result | None, peer: Result | None) -> str:
    if plexi and peer and plexi.rate and peer.rate:
        return f"{plexi.rate / peer.rate:.2f}×"
    return DASH


def throughput_table(scenarios, servers, results) -> list[tuple[str, ...]]:
    """Rows: scenario, unit, each server's rate, then Plexicorn ÷ each peer."""
    peers = [s for s in servers if s != "Plexicorn"]
    header = ("scenario", "unit", *servers, *(f"P÷{peer}" for peer in peers))
    rows = [header]
    for scenario in scenarios:
        plexi = results.get((scenario.key, "Plexicorn"))
        rows.append((scenario.title, scenario.unit,
                     *(format_rate(results.get((scenario.key, s))) for s in servers),
                     *(ratio(plexi, results.get((scenario.key, p))) for p in peers)))
    return rows


def median_round(rounds: list[dict]) -> dict:
    """One result per (scenario, server) out of several rounds: the round of median rate (the
    lower one of the middle two), with every round's errors added up, every round's note kept
    (numbered), and every round's rate under `extra["round_rates"]`. A single round is returned
    as it is."""
    if len(rounds) == 1:
        return rounds[0]
    combined = {}
    for key in dict.fromkeys(key for results in rounds for key in results):
        numbered = [(number, results[key]) for number, results in enumerate(rounds, 1) if key in results]
        runs = [result for _, result in numbered]
        measured = sorted((r for r in runs if r.rate is not None), key=lambda r: r.rate)
        median = measured[(len(measured) - 1) // 2] if measured else runs[0]
        combined[key] = dataclasses.replace(
            median, errors=sum(r.errors for r in runs),
            note="; ".join(f"round {number}: {r.note}" if len(runs) > 1 else r.note
                           for number, r in numbered if r.note),
            extra={**median.extra, "round_rates": [r.rate for r in runs]} if len(runs) > 1 else median.extra)
    return combined


def rounds_table(scenarios, servers, rounds: list[dict]) -> list[tuple[str, ...]]:
    """Rows: scenario, then for each peer Plexicorn ÷ peer in every round (– where either side has
    no figure) and the median of those (the lower of the middle two, as `median_round` takes)."""
    peers = [s for s in servers if s != "Plexicorn"]
    header = ("scenario", *(label for peer in peers for label in (f"P÷{peer} by round", "median")))
    rows = [header]
    for scenario in scenarios:
        cells = []
        for peer in peers:
            ratios = [plexi.rate / other.rate
                      if (plexi := results.get((scenario.key, "Plexicorn"))) and plexi.rate
                      and (other := results.get((scenario.key, peer))) and other.rate else None
                      for results in rounds]
            known = [value for value in ratios if value is not None]
            cells.append(" ".join(DASH if value is None else f"{value:.2f}" for value in ratios) if known else DASH)
            cells.append(f"{statistics.median_low(known):.2f}×" if known else DASH)
        rows.append((scenario.title, *cells))
    return rows


def latency_table(scenarios, servers, results) -> list[tuple[str, ...]]:
    """Rows: scenario, then each server's `p50 / p99 (errors)`."""
    rows = [("scenario", *(f"{s} p50 / p99, errors" for s in servers))]
    for scenario in scenarios:
        cells = []
        for server in servers:
            result = results.get((scenario.key, server))
            if result is None or result.rate is None:
                cells.append(DASH)
            else:
                cells.append(f"{format_latency(result.p50)} / {format_latency(result.p99)}, "
                             f"{result.errors}")
        rows.append((scenario.title, *cells))
    return rows


def memory_table(scenarios, servers, results) -> list[tuple[str, ...]]:
    """Rows: scenario, each server's `RSS before → after (per connection or stream)`."""
    rows = [("scenario", *(f"{s} RSS MiB" for s in servers))]
    for scenario in scenarios:
        cells = []
        for server in servers:
            result = results.get((scenario.key, server))
            if result is None or "rss_after" not in result.extra:
                cells.append(DASH)
                continue
            extra = result.extra
            grown = extra["rss_after"] - extra["rss_before"]
            per = grown / max(1, extra["opened"]) / 1024
            cell = (f"{extra['rss_before'] / 2**20:.1f} → {extra['rss_after'] / 2**20:.1f} "
                    f"(+{per:.1f} KiB each)")
            if extra["failed"]:
                cell += f", {extra['failed']} failed"
            cells.append(cell)
        rows.append((scenario.title, *cells))
    return rows


def render(rows: list[tuple[str, ...]], markdown: bool) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row):
        # Scenario names left-aligned, figures right-aligned.
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        return "| " + " | ".join(cells) + " |"

    rule = ("|" + "|".join([":" + "-" * (widths[0] + 1)]
                           + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|") if markdown \
        else "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def notes(results, skipped: dict[str, str]) -> list[str]:
    """One line per server left out (and why), then one per failed measurement."""
    lines = [f"{server}: {DASH} {reason}" for server, reason in skipped.items()]
    lines += [f"{server}, {key}: {r.note}" for (key, server), r in results.items() if r.note]
    return lines


def to_json(info: dict, settings: dict, scenarios, servers, results, skipped) -> dict:
    return {
        "machine": info,
        "settings": settings,
        "skipped": skipped,
        "scenarios": {
            s.key: {"title": s.title, "unit": s.unit, "results": {
                server: {"rate": r.rate, "p50_s": r.p50, "p99_s": r.p99, "errors": r.errors,
                         "note": r.note, **r.extra}
                for server in servers if (r := results.get((s.key, server))) is not None}}
            for s in scenarios
        },
    }


def comparison_table(previous: dict, current: dict, server: str = "Plexicorn") -> list[tuple[str, ...]]:
    """Rows: each scenario both JSON documents have for `server`: its figure and p99 then and now.

    The issue's "no regression" checks (p99, memory) read off this table between two runs."""
    rows = [("scenario", "unit", "before", "now", "change", "p99 before", "p99 now")]
    for key, now in current["scenarios"].items():
        old = previous.get("scenarios", {}).get(key, {}).get("results", {}).get(server)
        new = now["results"].get(server)
        if not old or not new or old.get("rate") is None or new.get("rate") is None:
            continue
        change = f"{(new['rate'] / old['rate'] - 1) * 100:+.0f} %" if old["rate"] else DASH
        rows.append((now["title"], now["unit"], f"{old['rate']:,.1f}", f"{new['rate']:,.1f}", change,
                     format_latency(old.get("p99_s")), format_latency(new.get("p99_s"))))
    return rows
