"""Prometheus metrics, served by the API at ``GET /metrics``: nothing grows with the tables.

Counted where the thing happens, never by aggregating history at scrape time:

- in this API process (``REGISTRY``): ``notifyflow_http_requests_total`` and
  ``notifyflow_http_request_duration_seconds`` by route template and status,
  ``notifyflow_notifications_requested_total{type, priority}``,
  ``notifyflow_answers_refused_total{reason}``, ``notifyflow_auth_failures_total{reason}``;
  each API replica counts its own and Prometheus sums them;
- in the workers' activities, through the Temporal SDK's meter (``notifyflow.worker_metrics``):
  deliveries, notifications ended, time to first answer, first answers within target and SLA
  breaches, webhook attempts — served with the SDK's own metrics at
  ``NOTIFYFLOW_WORKER_METRICS_ADDRESS``;
- at scrape time, one indexed query: ``notifyflow_notifications_open{type, status}``
  (requested and answered only, on the ``(status, created_at)`` index) and
  ``notifyflow_database_up``.

When the API has ``NOTIFYFLOW_WORKER_METRICS_ADDRESS`` too, its scrape fetches that endpoint
and appends the text, so one scrape of a single-worker deployment (the dev stack) shows
everything; ``notifyflow_worker_metrics_up`` says whether the fetch worked. With several
workers, Prometheus scrapes each worker directly instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Notification

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A scrape must answer even when the worker does not: Prometheus' own timeout is 10 s.
WORKER_SCRAPE_TIMEOUT_SECONDS = 2.0
# More than any worker's SDK metrics; a bigger answer is not a metrics endpoint.
WORKER_SCRAPE_MAX_BYTES = 4 * 1024 * 1024

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "notifyflow_http_requests",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "notifyflow_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
REQUESTED = Counter(
    "notifyflow_notifications_requested",
    "Notifications recorded through this API process, by type and priority",
    ["type", "priority"],
    registry=REGISTRY,
)
ANSWERS_REFUSED = Counter(
    "notifyflow_answers_refused",
    "Answers refused through this API process, by reason",
    ["reason"],
    registry=REGISTRY,
)


# Customer satisfaction ratings taken by the inbound webhook (this API process), by score; the
# histogram gives their average (sum / count) straight from Prometheus.
CSAT_RATINGS = Counter(
    "notifyflow_csat_ratings",
    "Customer satisfaction ratings recorded, by score (1-5)",
    ["score"],
    registry=REGISTRY,
)
CSAT_SCORES = Histogram(
    "notifyflow_csat_score",
    "Customer satisfaction scores recorded (1-5)",
    buckets=(1, 2, 3, 4, 5),
    registry=REGISTRY,
)


def count_csat_rating(score: int) -> None:
    CSAT_RATINGS.labels(score=str(score)).inc()
    CSAT_SCORES.observe(score)


def count_request(type: str, priority: str) -> None:
    REQUESTED.labels(type=type, priority=priority).inc()


def count_refused_answer(reason: str) -> None:
    ANSWERS_REFUSED.labels(reason=reason).inc()


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_DURATION.labels(method=method, route=route).observe(seconds)


# Refused authentications, by reason (missing, malformed_header, invalid_token, malformed_key,
# unknown_key, revoked_key).
AUTH_FAILURES = Counter(
    "notifyflow_auth_failures",
    "Requests refused 401 by authentication, by reason",
    ["reason"],
    registry=REGISTRY,
)


def count_auth_failure(reason: str) -> None:
    AUTH_FAILURES.labels(reason=reason).inc()


OPEN_STATUSES = ("requested", "answered")


@dataclass
class Snapshot:
    """What the database says at one scrape: the open notifications only."""

    database_up: bool = False
    open: list[tuple[str, str, int]] = field(default_factory=list)


async def collect_snapshot(db: SessionFactory) -> Snapshot:
    """One query on the ``(status, created_at)`` index; a database that does not answer gives
    ``database_up=False``."""
    try:
        async with db() as session:
            rows = await session.execute(
                select(Notification.type, Notification.status, func.count())
                .where(Notification.status.in_(OPEN_STATUSES))
                .group_by(Notification.type, Notification.status)
            )
            return Snapshot(database_up=True, open=[(t, st, int(n)) for t, st, n in rows.all()])
    except (SQLAlchemyError, OSError) as exc:
        # A scrape must still answer, so the alert on notifyflow_database_up can fire.
        log.warning("metrics: database query failed: %s", exc.__class__.__name__)
        return Snapshot(database_up=False)


def families(snapshot: Snapshot) -> list[Metric]:
    up = GaugeMetricFamily(
        "notifyflow_database_up", "1 if the database answered the last scrape, else 0"
    )
    up.add_metric([], 1.0 if snapshot.database_up else 0.0)
    out: list[Metric] = [up]
    if not snapshot.database_up:
        return out
    open_ = GaugeMetricFamily(
        "notifyflow_notifications_open",
        "Notifications waiting (requested) or being delivered (answered), by type",
        labels=["type", "status"],
    )
    for type_, status, count in snapshot.open:
        open_.add_metric([type_, status], float(count))
    out.append(open_)
    return out


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def render(snapshot: Snapshot) -> bytes:
    """The exposition text: database-derived families, then this process's own metrics."""
    # A registry per scrape: concurrent scrapes never see each other's snapshot.
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Fixed(families(snapshot)))
    return generate_latest(scrape) + generate_latest(REGISTRY)


def worker_metrics_url(address: str) -> str:
    """Where the API fetches a worker's metrics: a wildcard bind address (``0.0.0.0:9464``,
    ``[::]:9464``) means this host, so the same variable serves the worker and the API."""
    host, _, port = address.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"http://{host}:{port}/metrics"


async def fetch_worker_metrics(address: str) -> bytes | None:
    """The worker's SDK metrics text, or ``None`` if it did not answer well in time."""
    url = worker_metrics_url(address)
    try:
        # trust_env=False: a worker next door is never reached through an HTTP(S)_PROXY.
        async with httpx.AsyncClient(
            timeout=WORKER_SCRAPE_TIMEOUT_SECONDS, trust_env=False
        ) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        log.warning("metrics: worker metrics at %s: %s", url, exc.__class__.__name__)
        return None
    if response.status_code != 200 or len(response.content) > WORKER_SCRAPE_MAX_BYTES:
        log.warning("metrics: worker metrics at %s answered %s", url, response.status_code)
        return None
    text = response.content
    return text if not text or text.endswith(b"\n") else text + b"\n"


def _worker_up(up: bool) -> bytes:
    gauge = GaugeMetricFamily(
        "notifyflow_worker_metrics_up",
        "1 if the worker's Temporal SDK metrics (NOTIFYFLOW_WORKER_METRICS_ADDRESS) answered "
        "this scrape, else 0",
    )
    gauge.add_metric([], 1.0 if up else 0.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([gauge]))
    return generate_latest(registry)


async def scrape(db: SessionFactory, worker_metrics_address: str | None = None) -> bytes:
    """The whole exposition: database-derived families and this process's own metrics, then,
    with ``worker_metrics_address``, the worker's Temporal SDK metrics."""
    if worker_metrics_address is None:
        return render(await collect_snapshot(db))
    snapshot, worker = await asyncio.gather(
        collect_snapshot(db), fetch_worker_metrics(worker_metrics_address)
    )
    return render(snapshot) + _worker_up(worker is not None) + (worker or b"")
