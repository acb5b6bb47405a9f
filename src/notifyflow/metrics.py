"""Prometheus metrics, served by the API at ``GET /metrics``.

The numbers that matter — notifications by type and status, time to the first answer,
deliveries by method and outcome, refused answers by reason — are computed from the database at
scrape time with a few cheap GROUP BY queries. The database is the one place every API and
worker process writes to, so any replica answers a scrape with the same, complete numbers, and
nothing is lost when a process restarts.

``observe_answer`` feeds a process-local histogram for code (an activity, a benchmark) that
wants to observe latency as it happens; it is exposed next to the database-derived metrics by
whichever process serves ``REGISTRY``.

The Temporal SDK's worker metrics (``temporal_*``: task slots, pollers, task latencies) live in
the worker process, which serves them itself when ``NOTIFYFLOW_WORKER_METRICS_ADDRESS`` is set
(see ``notifyflow.worker.metrics_runtime``). When the API has the same variable, its scrape
fetches that endpoint and appends the text, so one scrape of a single-worker deployment (the
dev stack) shows everything; ``notifyflow_worker_metrics_up`` says whether the fetch worked.
With several workers, Prometheus scrapes each worker directly instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Delivery, Notification, NotificationAnswer

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A scrape must answer even when the worker does not: Prometheus' own timeout is 10 s.
WORKER_SCRAPE_TIMEOUT_SECONDS = 2.0
# More than any worker's SDK metrics; a bigger answer is not a metrics endpoint.
WORKER_SCRAPE_MAX_BYTES = 4 * 1024 * 1024

# From "answered while the customer waits" to "answered the next day".
ANSWER_BUCKETS: tuple[float, ...] = (
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    172800.0,
)

REGISTRY = CollectorRegistry(auto_describe=True)

_ANSWER_OBSERVED = Histogram(
    "notification_time_to_first_answer_observed_seconds",
    "Time from request to the first accepted answer, observed by this process",
    buckets=ANSWER_BUCKETS,
    registry=REGISTRY,
)


# Refused authentications, by reason (missing, malformed_header, invalid_token, malformed_key,
# unknown_key, revoked_key). Process-local, like the histogram above: each API replica counts
# its own, and Prometheus sums them.
AUTH_FAILURES = Counter(
    "notifyflow_auth_failures",
    "Requests refused 401 by authentication, by reason",
    ["reason"],
    registry=REGISTRY,
)


def count_auth_failure(reason: str) -> None:
    AUTH_FAILURES.labels(reason=reason).inc()


def observe_answer(seconds: float) -> None:
    """Record one request-to-first-answer latency in this process's histogram."""
    if seconds >= 0:
        _ANSWER_OBSERVED.observe(seconds)


@dataclass
class Snapshot:
    """What the database says at one scrape."""

    database_up: bool = False
    notifications: list[tuple[str, str, int]] = field(default_factory=list)
    answer_count: int = 0
    answer_sum: float = 0.0
    # Cumulative counts per upper bound, as Prometheus wants them.
    answer_buckets: list[tuple[float, int]] = field(default_factory=list)
    deliveries: list[tuple[str, str, int]] = field(default_factory=list)
    refusals: list[tuple[str, int]] = field(default_factory=list)


def _seconds_between(dialect: str) -> ColumnElement[Any]:
    """``answered_at - created_at`` in seconds, in the dialect's own date arithmetic."""
    if dialect == "postgresql":
        return func.extract("epoch", Notification.answered_at - Notification.created_at)
    # SQLite keeps timestamps as text; julianday() reads them, in days.
    return (func.julianday(Notification.answered_at) - func.julianday(Notification.created_at)) * (
        86400.0
    )


async def collect_snapshot(db: SessionFactory) -> Snapshot:
    """Run the scrape queries; a database that does not answer gives ``database_up=False``."""
    snapshot = Snapshot()
    try:
        async with db() as session:
            dialect = (await session.connection()).dialect.name
            rows = await session.execute(
                select(Notification.type, Notification.status, func.count()).group_by(
                    Notification.type, Notification.status
                )
            )
            snapshot.notifications = [(t, s, int(n)) for t, s, n in rows.all()]

            seconds = _seconds_between(dialect)
            columns: list[ColumnElement[Any]] = [
                func.count(),
                func.coalesce(func.sum(seconds), 0.0),
            ] + [
                func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0)
                for bound in ANSWER_BUCKETS
            ]
            answered = (
                await session.execute(select(*columns).where(Notification.answered_at.is_not(None)))
            ).one()
            snapshot.answer_count = int(answered[0])
            snapshot.answer_sum = float(answered[1])
            snapshot.answer_buckets = [
                (bound, int(count))
                for bound, count in zip(ANSWER_BUCKETS, answered[2:], strict=True)
            ]

            deliveries = await session.execute(
                select(Delivery.method, Delivery.status, func.count()).group_by(
                    Delivery.method, Delivery.status
                )
            )
            snapshot.deliveries = [(m, s, int(n)) for m, s, n in deliveries.all()]

            refusals = await session.execute(
                select(NotificationAnswer.reason_code, func.count())
                .where(NotificationAnswer.accepted.is_(False))
                .group_by(NotificationAnswer.reason_code)
            )
            snapshot.refusals = [(r or "unknown", int(n)) for r, n in refusals.all()]
            snapshot.database_up = True
    except (SQLAlchemyError, OSError) as exc:
        # A scrape must still answer, so the alert on notifyflow_database_up can fire.
        log.warning("metrics: database query failed: %s", exc.__class__.__name__)
        return Snapshot(database_up=False)
    return snapshot


def families(snapshot: Snapshot) -> list[Metric]:
    """The snapshot as Prometheus metric families."""
    up = GaugeMetricFamily(
        "notifyflow_database_up", "1 if the database answered the last scrape, else 0"
    )
    up.add_metric([], 1.0 if snapshot.database_up else 0.0)
    out: list[Metric] = [up]
    if not snapshot.database_up:
        return out

    # A gauge, though named *_total: a notification moves between statuses, so a
    # status's count goes down as well as up.
    notifications = GaugeMetricFamily(
        "notifications_total",
        "Notifications by type and current status",
        labels=["type", "status"],
    )
    for type_, status, count in snapshot.notifications:
        notifications.add_metric([type_, status], float(count))
    out.append(notifications)

    buckets: list[tuple[str, float]] = [
        (str(float(bound)), float(count)) for bound, count in snapshot.answer_buckets
    ]
    buckets.append(("+Inf", float(snapshot.answer_count)))
    out.append(
        HistogramMetricFamily(
            "notification_time_to_first_answer_seconds",
            "Time from request to the first accepted answer",
            buckets=buckets,
            sum_value=snapshot.answer_sum,
        )
    )

    # A gauge too: a delivery moves from pending to sent to delivered or failed.
    deliveries = GaugeMetricFamily(
        "deliveries_total",
        "Outbound sends by method (campaign|direct) and current outcome",
        labels=["method", "outcome"],
    )
    for method, outcome, count in snapshot.deliveries:
        deliveries.add_metric([method, outcome], float(count))
    out.append(deliveries)

    # Rejected attempts are never deleted or changed: a true counter.
    refused = CounterMetricFamily(
        "answers_refused", "Answer attempts refused, by reason", labels=["reason"]
    )
    for reason, count in snapshot.refusals:
        refused.add_metric([reason], float(count))
    out.append(refused)
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
