"""Helpers for the metrics tests: a `plexicorn` with --metrics-bind, and its /metrics scraped."""

from __future__ import annotations

import time
from typing import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from supervised import APPS, TIMEOUT

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def serve(plexicorn, *args: object, workers: int = 0):  # type: ignore[no-untyped-def]
    """tests/apps/metrics_app.py with metrics; (process, app port, metrics port) once serving."""
    port, metrics_port = free_port(), free_port()
    process = plexicorn("metrics_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}",
                        "--metrics-bind", f"127.0.0.1:{metrics_port}", "--no-access-log",
                        *(("--workers", workers) if workers else ()), *args)
    if workers:
        process.pids = process.wait_workers(workers)
    else:
        process.wait_listening()
    assert f"Metrics on http://127.0.0.1:{metrics_port}/metrics" in process.stderr.text
    return process, port, metrics_port


def scrape(metrics_port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=TIMEOUT)
    assert response.status_code == 200, response
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_metrics(metrics_port: int, condition: Callable[[Samples], bool], timeout: float = TIMEOUT) -> Samples:
    """Scrape until `condition` holds (workers report once a second); the samples then."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(metrics_port)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            shown = "\n".join(f"{name}{dict(labels)} {v}" for (name, labels), v in sorted(samples.items())
                              if name.startswith("plexicorn_") and v)
            raise AssertionError(f"metrics not as expected within {timeout} s; they are:\n{shown}")
        time.sleep(0.05)
