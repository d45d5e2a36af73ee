"""The metrics' counting and the supervisor's sum, without sockets; and the README's table of them."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from plexicorn.observe.aggregate import Aggregate
from plexicorn.observe import metrics as metrics_module
from plexicorn.observe.exposition import SnapshotCollector
from plexicorn.observe.metrics import DEFINITIONS, H2, HTTP1, NULL_METRICS, Counting, close_code_label, h2_code_label


def families(snapshot: dict[str, float]) -> dict[str, dict[tuple, float]]:
    found: dict[str, dict[tuple, float]] = {}
    for family in SnapshotCollector(lambda: snapshot).collect():
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_request_is_counted_once_by_status_class_and_timed(monkeypatch):
    # The clock is the test's: a loaded machine must not move a request into another bucket.
    readings = iter([10.0, 10.0004, 20.0, 20.3])  # 0.4 ms, then 300 ms
    monkeypatch.setattr(metrics_module.time, "perf_counter", lambda: next(readings))
    metrics = Counting()
    h1 = metrics.protocol(HTTP1)
    started = h1.request_started()
    assert metrics.snapshot()["requests_in_flight\thttp/1.1"] == 1
    h1.request_finished(started, 503)
    h1.request_answered(400)  # the server's own answer: counted, not timed
    h1.request_finished(h1.request_started(), 0)  # the client left before any response
    exposed = families(metrics.snapshot())
    assert exposed["plexicorn_requests_total"] == {
        (("protocol", "http/1.1"), ("status", "4xx")): 1, (("protocol", "http/1.1"), ("status", "5xx")): 1,
        (("protocol", "http/1.1"), ("status", "none")): 1}
    assert exposed["plexicorn_request_duration_seconds_count"] == {(("protocol", "http/1.1"),): 2,
                                                                    (("protocol", "h2"),): 0}
    # Cumulative buckets: the quick request is in the first (1 ms) and every one after it, the
    # slow one from 0.5 s on.
    buckets = exposed["plexicorn_request_duration_seconds_bucket"]
    assert buckets[(("le", "0.001"), ("protocol", "http/1.1"))] == 1
    assert buckets[(("le", "0.25"), ("protocol", "http/1.1"))] == 1
    assert buckets[(("le", "0.5"), ("protocol", "http/1.1"))] == 2
    assert buckets[(("le", "+Inf"), ("protocol", "http/1.1"))] == 2
    assert exposed["plexicorn_request_duration_seconds_sum"][(("protocol", "http/1.1"),)] == pytest.approx(0.3004)
    assert exposed["plexicorn_requests_in_flight"][(("protocol", "http/1.1"),)] == 0


def test_label_values_stay_bounded_whatever_the_peer_sends():
    assert h2_code_label(8) == "CANCEL"
    assert h2_code_label(0xDEAD) == "UNKNOWN"  # any code a client invents: one series
    assert [close_code_label(code) for code in (1000, 1006, 3001, 4999, 2000, 65535)] == [
        "1000", "1006", "3xxx", "4xxx", "other", "other"]
    metrics = Counting()
    for code in range(100_000, 101_000):
        metrics.h2_stream_reset(True, code)
        metrics.protocol(H2).websocket_closed(code)
    assert len(metrics.snapshot()) < 100


def test_the_sum_keeps_a_gone_workers_counters_and_drops_its_gauges():
    own = Counting()
    own.worker_restarted("exited")
    aggregate = Aggregate(own)
    first, second = Counting(), Counting()
    for worker in (first, second):
        counts = worker.protocol(HTTP1)
        counts.connection_opened()
        counts.request_finished(counts.request_started(), 200)
    first.protocol(HTTP1).connection_opened()  # still open when the first worker dies
    assert aggregate.update(1, first.snapshot()) and aggregate.update(2, second.snapshot())
    total = aggregate.snapshot()
    assert total["requests\thttp/1.1\t2xx"] == 2
    assert total["connections_open\thttp/1.1"] == 3
    aggregate.retire(1)
    total = aggregate.snapshot()
    assert total["requests\thttp/1.1\t2xx"] == 2  # never goes down
    assert total["connections_opened\thttp/1.1"] == 3
    assert total["connections_open\thttp/1.1"] == 1  # the dead worker's connections are gone
    assert total["worker_restarts\texited"] == 1
    # What is not a snapshot of ours is refused, and changes nothing.
    for bad in ([1], {"requests\th2\t2xx": "1"}, {"made_up": 1}, {"requests\th2\t2xx": True}):
        assert not aggregate.update(3, bad)
    assert aggregate.snapshot() == total


def test_metrics_off_count_nothing():
    NULL_METRICS.protocol(H2).request_finished(NULL_METRICS.protocol(H2).request_started(), 200)
    NULL_METRICS.goaway_sent(0)
    assert NULL_METRICS.snapshot() == {} and not NULL_METRICS.enabled


def test_readme_lists_every_metric_with_its_type_and_labels():
    section = (REPO / "README.md").read_text().split("### Metrics", 1)[1].split("\n### ", 1)[0]
    rows = {match[0]: (match[1], match[2]) for match in
            re.findall(r"^\| `(plexicorn_\w+)` \| (\w+) \| ([^|]*) \|", section, re.M)}
    expected = {f"plexicorn_{d.name}{'_total' if d.kind == 'counter' else ''}": d for d in DEFINITIONS}
    assert set(rows) == set(expected)
    for name, definition in expected.items():
        kind, labels = rows[name]
        assert kind == definition.kind, name
        # The label names, without the values some rows give in parentheses.
        assert re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", labels)) == list(definition.labels), name
