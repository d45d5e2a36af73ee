"""A real Prometheus server scrapes Plexicorn's --metrics-bind and its query API returns the counts.

Prometheus (Debian's `prometheus` package, installed by .ci/run) runs on an ephemeral port with
a storage directory under tmp_path and a scrape interval of two seconds; Plexicorn runs two
workers, so what Prometheus stores is the supervisor's sum. The test waits on Prometheus's own
answers (readiness, target health, query results), with deadlines.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from metricshelp import serve
from supervised import plexicorn  # noqa: F401

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEADLINE = 40.0

pytestmark = [
    pytest.mark.skipif(not Path(PROMETHEUS).is_file(),
                       reason="needs Prometheus (Debian package `prometheus`; .ci/run installs it)"),
    pytest.mark.timeout(90),
]


@pytest.fixture
def prometheus(tmp_path):  # type: ignore[no-untyped-def]
    """Start Prometheus scraping a target: start(metrics_port) -> its API's base URL."""
    started: list[subprocess.Popen] = []

    def start(target_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        # A scrape over its timeout marks every series stale (queries answer nothing until the
        # next one): 2 s gives a loaded machine room (the timeout cannot exceed the interval).
        config.write_text(f"""
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: plexicorn
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
""")
        log = open(tmp_path / "prometheus.log", "w")
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        until(lambda: _get(f"{url}/-/ready") == 200, "Prometheus ready", process, tmp_path)
        return url

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def until(condition, what: str, process=None, tmp_path=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"Prometheus exited: {(tmp_path / 'prometheus.log').read_text()}")
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE} s"
        time.sleep(0.2)


def query(url: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query: {labels (without __name__, job, instance): value}."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    results = {}
    for series in answer["data"]["result"]:
        labels = {k: v for k, v in series["metric"].items() if k not in ("__name__", "job", "instance")}
        results[tuple(sorted(labels.items()))] = float(series["value"][1])
    return results


def test_prometheus_scrapes_the_whole_servers_counters(plexicorn, prometheus):
    process, port, metrics_port = serve(plexicorn, workers=2)
    url = prometheus(metrics_port)
    until(lambda: query(url, 'up{job="plexicorn"}') == {(): 1.0}, "Plexicorn's target up")

    for _ in range(5):  # new connections: the kernel spreads them over both workers
        assert httpx.get(f"http://127.0.0.1:{port}/status/200", timeout=10).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/status/404", timeout=10).status_code == 404
    with httpx.Client(http1=False, http2=True, timeout=10) as client:  # h2c, prior knowledge
        for _ in range(3):
            assert client.get(f"http://127.0.0.1:{port}/").http_version == "HTTP/2"

    expected = {(("protocol", "h2"), ("status", "2xx")): 3.0,
                (("protocol", "http/1.1"), ("status", "2xx")): 5.0,
                (("protocol", "http/1.1"), ("status", "4xx")): 1.0}
    until(lambda: query(url, "plexicorn_requests_total") == expected, "the request counts in Prometheus")
    # Every query is waited for: a late scrape leaves no series until the next one.
    until(lambda: query(url, "sum by (protocol) (plexicorn_request_duration_seconds_count)") == {
        (("protocol", "h2"),): 3.0, (("protocol", "http/1.1"),): 6.0}, "the request duration counts in Prometheus")
    until(lambda: query(url, "plexicorn_connections_opened_total") == {
        (("protocol", "h2"),): 1.0, (("protocol", "http/1.1"),): 6.0}, "the connection counts in Prometheus")
    # A histogram Prometheus can use: every request was quicker than 10 s.
    until(lambda: 0 < query(url, "histogram_quantile(0.99, sum by (le) (plexicorn_request_duration_seconds_bucket))")
          .get((), 0) <= 10.0, "the 0.99 quantile in Prometheus")
    assert query(url, "plexicorn_worker_restarts_total") == {}  # no restart, no series
    assert process.stop() == 0
