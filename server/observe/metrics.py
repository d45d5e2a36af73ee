"""What the server counts for its metrics, as plain integers: the verbs protocol code calls at
its events, and the snapshot they add up to.

`Metrics` and `ProtocolMetrics` are the null implementation (metrics off): every verb does
nothing, so the hot path pays a method call and no more. `Counting` and `ProtocolCounts` count.
A connection asks once for its protocol's `ProtocolMetrics` (`metrics.protocol("h2")`) and then
calls it directly: no look-up per request or per read. Bytes are added per read and per write
(one write per loop turn), never per frame.

Nothing here knows Prometheus: a `snapshot()` is a flat {sample key: value} dict (JSON for a
worker's report to its supervisor, summed by aggregate.py, exposed by exposition.py), so that the
counting costs an integer addition whether one process serves or many.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import NamedTuple

from h2.errors import ErrorCodes

HTTP1 = "http/1.1"
H2 = "h2"
PROTOCOLS = (HTTP1, H2)

# Upper bounds (seconds) of the request duration histogram's buckets; +Inf follows.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Sample keys are the metric's short name and its label values, separated by this.
SEP = "\t"


class Definition(NamedTuple):
    name: str  # exposed as plexicorn_NAME (counters: plexicorn_NAME_total)
    kind: str  # "counter", "gauge" or "histogram"
    labels: tuple[str, ...]
    help: str


DEFINITIONS = (
    Definition("requests", "counter", ("protocol", "status"),
               "HTTP requests answered, by protocol and status class (2xx...; none: the client left "
               "before any response); WebSocket sessions are counted apart."),
    Definition("request_duration_seconds", "histogram", ("protocol",),
               "Seconds from a request's head to the end of its application call."),
    Definition("requests_in_flight", "gauge", ("protocol",), "Requests whose application call is running."),
    Definition("connections_opened", "counter", ("protocol",), "Connections that began speaking HTTP."),
    Definition("connections_open", "gauge", ("protocol",), "Connections open now."),
    Definition("bytes_received", "counter", ("protocol",), "Bytes read from clients (after TLS decryption)."),
    Definition("bytes_sent", "counter", ("protocol",), "Bytes written to clients (before TLS encryption)."),
    Definition("h2_streams_opened", "counter", (), "HTTP/2 streams handed to the application (requests, "
               "WebSockets, pushes)."),
    Definition("h2_streams_refused", "counter", (), "HTTP/2 streams refused with REFUSED_STREAM (over the "
               "concurrency limit, or while shutting down)."),
    Definition("h2_streams_reset", "counter", ("by", "code"), "HTTP/2 RST_STREAMs, by the side that sent "
               "them (client or server) and error code."),
    Definition("h2_goaways_sent", "counter", ("code",), "HTTP/2 GOAWAY frames sent, by error code."),
    Definition("tls_handshakes", "counter", ("result",), "TLS handshakes, completed or failed."),
    Definition("websocket_sessions_opened", "counter", ("protocol",), "WebSockets accepted by the application."),
    Definition("websocket_sessions_open", "gauge", ("protocol",), "WebSockets open now."),
    Definition("websocket_sessions_closed", "counter", ("protocol", "code"),
               "WebSockets ended, by the close code the application saw (1006: no close handshake; "
               "3xxx, 4xxx: application codes)."),
    Definition("worker_restarts", "counter", ("reason",), "Worker processes replaced by the supervisor: "
               "exited (died), unresponsive (killed for the heartbeat), max_requests, restart (SIGHUP), "
               "reload (--reload)."),
)
GAUGES = frozenset(d.name for d in DEFINITIONS if d.kind == "gauge")


def key(name: str, *labels: object) -> str:
    return SEP.join((name, *map(str, labels)))


def status_label(index: int) -> str:
    return f"{index}xx" if index else "none"


def h2_code_label(code: int) -> str:
    """An HTTP/2 error code's name; any code a peer invents is UNKNOWN (bounded label values)."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return "UNKNOWN"


def close_code_label(code: int) -> str:
    """A WebSocket close code: the RFC 6455 ones as themselves, application ones by thousand."""
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"


class ProtocolMetrics:
    """The verbs of one protocol's connections; this base counts nothing (metrics off)."""

    __slots__ = ()

    def connection_opened(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass

    def received(self, size: int) -> None:
        pass

    def sent(self, size: int) -> None:
        pass

    def request_started(self) -> float:
        """A request goes to the application; the token request_finished takes."""
        return 0.0

    def request_finished(self, started: float, status: int) -> None:
        """The application call of a request started at `started` ended; `status`: the response
        it began (0: none)."""

    def request_answered(self, status: int) -> None:
        """The server answered a request itself (400, 431, 501...), without the application."""

    def websocket_opened(self) -> None:
        pass

    def websocket_closed(self, code: int) -> None:
        pass


class Metrics:
    """The verbs of the whole server; this base counts nothing (metrics off)."""

    enabled = False

    def protocol(self, name: str) -> ProtocolMetrics:
        return NULL_PROTOCOL

    def h2_stream_opened(self) -> None:
        pass

    def h2_stream_refused(self) -> None:
        pass

    def h2_stream_reset(self, by_client: bool, code: int) -> None:
        pass

    def goaway_sent(self, code: int) -> None:
        pass

    def tls_handshake(self, completed: bool) -> None:
        pass

    def worker_restarted(self, reason: str) -> None:
        pass

    def snapshot(self) -> dict[str, float]:
        return {}


NULL_PROTOCOL = ProtocolMetrics()
NULL_METRICS = Metrics()


class ProtocolCounts(ProtocolMetrics):
    __slots__ = ("name", "opened", "open", "bytes_in", "bytes_out", "in_flight", "by_status", "buckets",
                 "duration_sum", "ws_opened", "ws_open", "ws_closed")

    def __init__(self, name: str) -> None:
        self.name = name
        self.opened = 0
        self.open = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.in_flight = 0
        self.by_status = [0] * 10  # by status // 100; 0: no response
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # not cumulative; the last is +Inf
        self.duration_sum = 0.0
        self.ws_opened = 0
        self.ws_open = 0
        self.ws_closed: dict[str, int] = {}

    def connection_opened(self) -> None:
        self.opened += 1
        self.open += 1

    def connection_closed(self) -> None:
        self.open -= 1

    def received(self, size: int) -> None:
        self.bytes_in += size

    def sent(self, size: int) -> None:
        self.bytes_out += size

    def request_started(self) -> float:
        self.in_flight += 1
        return time.perf_counter()

    def request_finished(self, started: float, status: int) -> None:
        self.in_flight -= 1
        self.by_status[status // 100 if status < 1000 else 0] += 1
        duration = time.perf_counter() - started
        self.buckets[bisect_left(DURATION_BUCKETS, duration)] += 1  # le: the first bound >= it
        self.duration_sum += duration

    def request_answered(self, status: int) -> None:
        self.by_status[status // 100 if status < 1000 else 0] += 1

    def websocket_opened(self) -> None:
        self.ws_opened += 1
        self.ws_open += 1

    def websocket_closed(self, code: int) -> None:
        self.ws_open -= 1
        label = close_code_label(code)
        self.ws_closed[label] = self.ws_closed.get(label, 0) + 1

    def samples(self, into: dict[str, float]) -> None:
        name = self.name
        into[key("connections_opened", name)] = self.opened
        into[key("connections_open", name)] = self.open
        into[key("bytes_received", name)] = self.bytes_in
        into[key("bytes_sent", name)] = self.bytes_out
        into[key("requests_in_flight", name)] = self.in_flight
        for index, count in enumerate(self.by_status):
            if count:
                into[key("requests", name, status_label(index))] = count
        for index, count in enumerate(self.buckets):
            into[key("request_duration_seconds_bucket", name, index)] = count
        into[key("request_duration_seconds_sum", name)] = self.duration_sum
        into[key("websocket_sessions_opened", name)] = self.ws_opened
        into[key("websocket_sessions_open", name)] = self.ws_open
        for label, count in self.ws_closed.items():
            into[key("websocket_sessions_closed", name, label)] = count


class Counting(Metrics):
    """Metrics on: every verb counts, in this process."""

    enabled = True

    def __init__(self) -> None:
        self._protocols = {name: ProtocolCounts(name) for name in PROTOCOLS}
        self._counts: dict[str, int] = {}  # the server-wide counters, by sample key

    def protocol(self, name: str) -> ProtocolMetrics:
        return self._protocols[name]

    def _add(self, sample: str) -> None:
        self._counts[sample] = self._counts.get(sample, 0) + 1

    def h2_stream_opened(self) -> None:
        self._add("h2_streams_opened")

    def h2_stream_refused(self) -> None:
        self._add("h2_streams_refused")

    def h2_stream_reset(self, by_client: bool, code: int) -> None:
        self._add(key("h2_streams_reset", "client" if by_client else "server", h2_code_label(code)))

    def goaway_sent(self, code: int) -> None:
        self._add(key("h2_goaways_sent", h2_code_label(code)))

    def tls_handshake(self, completed: bool) -> None:
        self._add(key("tls_handshakes", "completed" if completed else "failed"))

    def worker_restarted(self, reason: str) -> None:
        self._add(key("worker_restarts", reason))

    def snapshot(self) -> dict[str, float]:
        samples: dict[str, float] = dict(self._counts)
        for counts in self._protocols.values():
            counts.samples(samples)
        return samples
