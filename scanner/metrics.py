"""The daemon's HTTP endpoint: `/healthz` (JSON) and `/metrics` (Prometheus text format).

prometheus-client with its own `CollectorRegistry`, so nothing global leaks in and two
daemons in one process (tests, the soak benchmark) never share counters. Counters and the
histogram are fed as scans and deliveries happen; asset ages, SLAs and open findings are
computed at scrape time from what the daemon keeps in memory, never from a probe.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from scanner.inventory import Inventory
from scanner.model import FreshnessObservation

log = logging.getLogger("ctxscan.http")
SEVERITIES = ("critical", "high", "medium", "low", "info")


def asset_slas(inventory: Inventory, assets: Mapping[str, list[tuple[str, FreshnessObservation]]],
               now: datetime) -> dict[tuple[str, str], float]:
    """(source, path) -> the effective SLA in seconds, as the `stale` rule computes it.

    One source of truth: `scanner.rules.sla.effective_sla` over the assets the daemon holds,
    so the gauge follows reads through `feeds`, glob reads and glob `assets:` overrides.
    """
    from scanner.model import Asset, SourceSnapshot
    from scanner.rules.base import RuleContext
    from scanner.rules.sla import effective_sla

    snapshots = {
        source_id: SourceSnapshot(source_id=source_id, connector=inventory.sources[source_id].connector,
                                  probed_at=now, assets=tuple(Asset(path=path, kind="asset", freshness=freshness)
                                                              for path, freshness in entries))
        for source_id, entries in assets.items() if source_id in inventory.sources}
    context = RuleContext(inventory=inventory, snapshots=snapshots, results={}, now=now)
    slas: dict[tuple[str, str], float] = {}
    for source_id, snapshot in snapshots.items():
        for asset in snapshot.assets:
            sla = effective_sla(context, source_id, asset.path)
            if sla is not None and sla.max_age is not None:
                slas[(source_id, asset.path)] = sla.max_age
    return slas


@dataclass
class MetricsView:
    """What a scrape reads from the daemon, taken under its lock."""

    now: datetime
    inventory: Inventory
    assets: Mapping[str, list[tuple[str, FreshnessObservation]]]
    open_findings: Mapping[tuple[str, str], int]
    last_success: Mapping[str, datetime]
    outbox_pending: Mapping[str, int]
    scheduler_running: bool
    source_up: Mapping[str, bool] = field(default_factory=dict)
    leader: bool = True
    zones: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class _StateCollector:
    """Gauges computed at scrape time."""

    def __init__(self, view: Callable[[], MetricsView]) -> None:
        self.view = view

    def describe(self) -> list[Metric]:
        return []  # scrape-time values only; nothing to register up front

    def collect(self) -> Iterator[Metric]:
        view = self.view()
        age = GaugeMetricFamily("ctxscan_asset_age_seconds",
                                "Seconds since the asset last changed, from its newest successful scan.",
                                labels=["source", "asset"])
        sla = GaugeMetricFamily("ctxscan_asset_sla_seconds",
                                "The asset's effective freshness SLA, as the stale rule computes it.",
                                labels=["source", "asset"])
        slas = asset_slas(view.inventory, view.assets, view.now)
        for source_id, assets in sorted(view.assets.items()):
            if source_id not in view.inventory.sources:
                continue
            for path, freshness in assets:
                seconds = freshness.age_seconds(view.now)
                if seconds is not None:
                    age.add_metric([source_id, path], seconds)
                limit = slas.get((source_id, path))
                if limit is not None:
                    sla.add_metric([source_id, path], limit)
        yield age
        yield sla
        findings = GaugeMetricFamily("ctxscan_open_findings", "Open findings that no accept: entry hides.",
                                     labels=["kind", "severity"])
        for (kind, severity), count in sorted(view.open_findings.items()):
            findings.add_metric([kind, severity], count)
        yield findings
        success = GaugeMetricFamily("ctxscan_source_last_success_timestamp_seconds",
                                    "Unix time of the newest successful scan of the source.",
                                    labels=["source"])
        for source_id, when in sorted(view.last_success.items()):
            if source_id in view.inventory.sources:
                success.add_metric([source_id], when.timestamp())
        yield success
        up = GaugeMetricFamily("ctxscan_source_up", "1 when the source's newest scan succeeded.",
                               labels=["source"])
        for source_id, ok in sorted(view.source_up.items()):
            if source_id in view.inventory.sources:
                up.add_metric([source_id], 1.0 if ok else 0.0)
        yield up
        pending = GaugeMetricFamily("ctxscan_notifications_pending", "Messages waiting in the outbox.",
                                    labels=["target"])
        for name, count in sorted(view.outbox_pending.items()):
            pending.add_metric([name], count)
        yield pending
        running = GaugeMetricFamily("ctxscan_scheduler_running", "1 while the scheduler runs.")
        running.add_metric([], 1.0 if view.scheduler_running else 0.0)
        yield running
        leader = GaugeMetricFamily("ctxscan_leader", "1 on the daemon that leads its store, 0 on a standby.")
        leader.add_metric([], 1.0 if view.leader else 0.0)
        yield leader
        workers = GaugeMetricFamily("ctxscan_zone_workers", "Workers of the zone that answered.",
                                    labels=["zone"])
        depth = GaugeMetricFamily("ctxscan_zone_queue_depth", "Probe tasks waiting in the zone's queue.",
                                  labels=["zone"])
        latency = GaugeMetricFamily("ctxscan_zone_dispatch_latency_seconds",
                                    "Seconds from dispatch until a worker started the probe.",
                                    labels=["zone", "quantile"])
        for zone, status in sorted(view.zones.items()):
            workers.add_metric([zone], float(len(status.get("workers") or ())))
            if status.get("queue_depth") is not None:
                depth.add_metric([zone], float(status["queue_depth"]))
            for quantile, key in (("0.5", "dispatch_latency_p50"), ("0.99", "dispatch_latency_p99")):
                if status.get(key) is not None:
                    latency.add_metric([zone, quantile], float(status[key]))
        yield workers
        yield depth
        yield latency


class DaemonMetrics:
    """The daemon's Prometheus registry."""

    def __init__(self, view: Callable[[], MetricsView]) -> None:
        disable_created_metrics()  # `_created` series only double the output for no use here
        self.registry = CollectorRegistry(auto_describe=False)
        self.scans = Counter("ctxscan_scans", "Scans of a source by outcome.", ["source", "status"],
                             registry=self.registry)
        self.probe_failures = Counter("ctxscan_probe_failures", "Probes that failed or timed out.",
                                      ["source", "reason"], registry=self.registry)
        self.scan_duration = Histogram("ctxscan_scan_duration_seconds", "Probe duration of a source.",
                                       ["source"], registry=self.registry,
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.notifications = Counter("ctxscan_notifications", "Messages delivered, by target and event.",
                                     ["target", "event"], registry=self.registry)
        self.notification_failures = Counter("ctxscan_notification_failures",
                                             "Delivery attempts that failed, by target.", ["target"],
                                             registry=self.registry)
        self.reloads = Counter("ctxscan_inventory_reloads", "Inventory reloads by outcome.", ["outcome"],
                               registry=self.registry)
        self.registry.register(_StateCollector(view))  # type: ignore[arg-type]

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class HealthServer:
    """A small threaded HTTP server for /healthz and /metrics."""

    def __init__(self, host: str, port: int, health: Callable[[], tuple[int, dict[str, Any]]],
                 metrics: DaemonMetrics,
                 post_routes: Mapping[str, Callable[[Mapping[str, str], bytes], tuple[int, dict[str, Any]]]]
                 | None = None, max_body: int = 16 * 1024 * 1024) -> None:
        server_self = self
        routes = dict(post_routes or {})

        class Handler(BaseHTTPRequestHandler):
            server_version = "ctxscan"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/healthz", "/health"):
                        code, body = health()
                        self._send(code, "application/json",
                                   json.dumps(body, indent=2, default=str).encode() + b"\n")
                    elif path == "/metrics":
                        self._send(200, CONTENT_TYPE_LATEST, server_self.metrics.render())
                    else:
                        self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")
                except Exception as exc:  # never kill the server thread
                    log.warning("error serving %s: %s", path, type(exc).__name__)
                    self._send(500, "text/plain", b"internal error\n")

            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                path = self.path.split("?", 1)[0]
                handler = routes.get(path)
                if handler is None:
                    self._send(404, "text/plain", b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or -1)
                except ValueError:
                    length = -1
                if length < 0:
                    self._send(411, "application/json", b'{"error": "Content-Length is required"}\n')
                    return
                if length > max_body:
                    self.close_connection = True  # the rest of the body is never read
                    self._send(413, "application/json", b'{"error": "the body is too large"}\n')
                    return
                try:
                    code, body = handler(dict(self.headers.items()), self.rfile.read(length))
                    self._send(code, "application/json", json.dumps(body).encode() + b"\n")
                except Exception as exc:  # never kill the server thread
                    log.warning("error serving POST %s: %s", path, type(exc).__name__)
                    self._send(500, "application/json", b'{"error": "internal error"}\n')

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s " + format, self.address_string(), *args)

        self.metrics = metrics
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="ctxscan-http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
