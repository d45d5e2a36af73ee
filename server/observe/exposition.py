"""The Prometheus side of the metrics: `/metrics` on a listener of its own (`--metrics-bind`).

A snapshot (metrics.py: this process's, or aggregate.py: the sum over the workers) becomes
metric families at each scrape, in the format the scraper asks for (prometheus_client's
exposition: text or OpenMetrics). The listener is served by Plexicorn's own HTTP stack, with an
ASGI app of a few lines: the same parsing, limits and timeouts as the application's listeners,
on the event loop of the process that owns the numbers (the single server, or the supervisor),
so that a scrape never reads counters another thread is changing. Importing this module without
prometheus_client (the `plexicorn[metrics]` extra) is one ConfigError line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Callable

from ..config import Config, ConfigError, parse_bind
from ..errors import StartupError
from ..runtime.context import ServerContext
from ..runtime.listener import bind_socket, start_listening
from .metrics import DEFINITIONS, DURATION_BUCKETS, SEP

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.exposition import choose_encoder
except ImportError:
    raise ConfigError("--metrics-bind needs prometheus_client: pip install 'plexicorn[metrics]'") from None

logger = logging.getLogger("plexicorn.error")

PREFIX = "plexicorn_"
PATH = "/metrics"
_BOUNDS = [repr(bound) for bound in DURATION_BUCKETS] + ["+Inf"]
_FAMILIES = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}

Snapshot = Callable[[], dict[str, float]]


class SnapshotCollector:
    """prometheus_client's collector interface over a snapshot, taken at each scrape."""

    def __init__(self, source: Snapshot) -> None:
        self._source = source

    def collect(self) -> Any:
        by_name: dict[str, dict[tuple[str, ...], float]] = {}
        for sample, value in self._source().items():
            name, *labels = sample.split(SEP)
            by_name.setdefault(name, {})[tuple(labels)] = value
        for definition in DEFINITIONS:
            name = PREFIX + definition.name
            if definition.kind == "histogram":
                yield self._histogram(definition.name, name, definition, by_name)
                continue
            family = _FAMILIES[definition.kind](name, definition.help, labels=definition.labels)
            for labels, value in sorted(by_name.get(definition.name, {}).items()):
                family.add_metric(labels, value)
            yield family

    @staticmethod
    def _histogram(short: str, name: str, definition: Any, by_name: dict[str, dict[tuple[str, ...], float]]) -> Any:
        family = HistogramMetricFamily(name, definition.help, labels=definition.labels)
        buckets: dict[tuple[str, ...], list[float]] = {}
        for (*labels, index), count in by_name.get(short + "_bucket", {}).items():
            counts = buckets.setdefault(tuple(labels), [0.0] * len(_BOUNDS))
            if index.isdigit() and int(index) < len(_BOUNDS):
                counts[int(index)] += count
        sums = by_name.get(short + "_sum", {})
        for labels, counts in sorted(buckets.items()):
            cumulative, running = [], 0.0
            for bound, count in zip(_BOUNDS, counts):
                running += count
                cumulative.append((bound, running))
            family.add_metric(list(labels), cumulative, sums.get(labels, 0.0))
        return family


def metrics_app(source: Snapshot) -> Any:
    """The ASGI app of the metrics listener: GET /metrics, and 404 for anything else."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))  # type: ignore[arg-type]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close"})  # refused: 403
            return
        if scope["type"] != "http":
            return
        headers: list[tuple[bytes, bytes]]
        if scope["path"] != PATH:
            status, headers, body = 404, [(b"content-type", b"text/plain")], b"Not Found: metrics are at /metrics\n"
        elif scope["method"] not in ("GET", "HEAD"):
            status, headers, body = 405, [(b"allow", b"GET, HEAD")], b""
        else:
            accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
            encoder, content_type = choose_encoder(accept.decode("latin-1"))
            status, headers, body = 200, [(b"content-type", content_type.encode("latin-1"))], encoder(registry)
        headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return app


class MetricsEndpoint:
    """The `--metrics-bind` listener: Plexicorn's HTTP/1.1 and h2c serving `metrics_app`."""

    def __init__(self, server: asyncio.Server, context: ServerContext, address: tuple[str, int]) -> None:
        self._server = server
        self._context = context
        self.address = address

    @classmethod
    async def start(cls, config: Config, source: Snapshot) -> MetricsEndpoint:
        assert config.metrics_bind is not None
        bind = parse_bind(config.metrics_bind)
        sockets = bind_socket(bind, config.backlog)  # StartupError if taken
        if len(sockets) != 1:
            for sock in sockets:
                sock.close()
            raise StartupError(f"--metrics-bind {config.metrics_bind}: resolves to {len(sockets)} "
                               "addresses; give one (an IP address)")
        # Cleartext, every request unlogged (a scrape a second would drown the access log),
        # counted by nothing: the app's settings otherwise (limits, timeouts).
        own = dataclasses.replace(config, access_log=False, http="auto", alpn=("h2", "http/1.1"), h2c=True,
                                  certfile=None, keyfile=None, cert=(), sni_dir=None, dev_cert=False,
                                  redirect_http=None, hsts=0, ca_certs=None, client_cert="none",
                                  # Prometheus scrapes /metrics directly: no prefix, no PROXY header, no gate.
                                  root_path="", proxy_protocol="off", proxy_headers=False, limit_concurrency=0)
        context = ServerContext(app=metrics_app(source), config=own)
        server = await start_listening(context, sockets[0])
        host, port = sockets[0].getsockname()[:2]
        logger.info("Metrics on http://%s:%d%s", f"[{host}]" if ":" in host else host, port, PATH)
        return cls(server, context, (host, port))

    async def close(self) -> None:
        self._server.close()
        for connection in list(self._context.connections):
            connection.abort()
        await asyncio.sleep(0)  # let aborted transports report connection_lost
        await self._server.wait_closed()
