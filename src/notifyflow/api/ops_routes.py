"""Operations: ``/healthz`` (liveness with dependency details), ``/readyz`` (readiness: 503
while the database or Temporal does not answer) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import text

from notifyflow import metrics
from notifyflow.api.deps import DB, AppSettings, Temporal
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import OperatorOnly
from notifyflow.models.errors import NotificationError, RefusalCode

log = logging.getLogger("notifyflow.api")

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_SECONDS = 2.0
# Liveness must answer fast even while a dependency stalls (a probe's default timeout is 1 s):
# its dependency details are best effort within this bound.
LIVENESS_CHECK_SECONDS = 0.5

Reachability = Literal["ok", "unreachable"]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: Reachability
    temporal: Reachability


async def _database_ok(db: DB, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    try:
        async with asyncio.timeout(timeout), db() as session:
            await session.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # any failure means "not reachable", never a failed probe
        log.warning("healthz: database check failed: %s", exc.__class__.__name__)
        return False


async def _temporal_ok(temporal: Temporal, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    try:
        async with asyncio.timeout(timeout):
            client = await temporal.get()
            return await client.service_client.check_health(timeout=timedelta(seconds=timeout))
    except Exception as exc:
        log.warning("healthz: temporal check failed: %s", exc.__class__.__name__)
        return False


@router.get("/healthz")
async def healthz(db: DB, temporal: Temporal) -> Health:
    """Always 200 while the process serves requests (liveness); says whether the database and
    Temporal answer, so a dependency outage does not get the API restarted in a loop."""
    database, workflow = await asyncio.gather(
        _database_ok(db, LIVENESS_CHECK_SECONDS), _temporal_ok(temporal, LIVENESS_CHECK_SECONDS)
    )
    return Health(
        database="ok" if database else "unreachable",
        temporal="ok" if workflow else "unreachable",
    )


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    database: Literal["ok"] = "ok"
    temporal: Literal["ok"] = "ok"


@router.get(
    "/readyz",
    responses={503: {"model": ErrorEnvelope, "description": "The database or Temporal is away"}},
)
async def readyz(db: DB, temporal: Temporal) -> Ready:
    """200 when the database and Temporal both answer (within 2 s each); else 503 naming the
    one that does not, so a load balancer sends requests elsewhere meanwhile."""
    database, workflow = await asyncio.gather(_database_ok(db), _temporal_ok(temporal))
    down = [name for name, ok in (("database", database), ("temporal", workflow)) if not ok]
    if down:
        raise NotificationError(
            RefusalCode.not_ready,
            f"not ready: {' and '.join(down)} not answering",
            details={
                "database": "ok" if database else "unreachable",
                "temporal": "ok" if workflow else "unreachable",
            },
        )
    return Ready()


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text"},
        403: {
            "model": ErrorEnvelope,
            "description": "A merchant key: the operator token is needed",
        },
    },
)
async def prometheus_metrics(db: DB, settings: AppSettings, _operator: OperatorOnly) -> Response:
    """Notifications by type and status, time to first answer, deliveries by method and
    outcome, refused answers by reason — computed from the database at scrape time — and,
    when ``NOTIFYFLOW_WORKER_METRICS_ADDRESS`` is set, the worker's Temporal SDK metrics
    (``temporal_*``) fetched from there. Operator token only: the numbers span every
    merchant."""
    body = await metrics.scrape(db, settings.worker_metrics_address)
    return Response(body, media_type=metrics.CONTENT_TYPE)
