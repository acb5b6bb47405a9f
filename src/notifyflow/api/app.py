"""The FastAPI application (DESIGN §4)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from notifyflow import __version__
from notifyflow.api import (
    answer_template_routes,
    directory_routes,
    event_routes,
    key_routes,
    notification_routes,
    ops_routes,
    outbound_webhook_routes,
    settings_routes,
    webhook_routes,
)
from notifyflow.api.auth import AuthMiddleware, is_open
from notifyflow.api.deps import TemporalHandle
from notifyflow.api.errors import (
    MAX_BODY_BYTES,
    BodyLimitMiddleware,
    CatchAllMiddleware,
    ErrorEnvelope,
    install_error_handlers,
)
from notifyflow.api.http_metrics import HttpMetricsMiddleware
from notifyflow.config import Settings
from notifyflow.db import session as db_session
from notifyflow.db.session import SessionFactory

log = logging.getLogger("notifyflow.api")

DESCRIPTION = """\
Durable human-in-the-loop notifications: an AI agent asks a merchant's admins on WhatsApp,
one admin answers, the answer reaches the customer.

Errors are `{"error": {"code", "message", "details"}}`. When `NOTIFYFLOW_API_TOKEN` is set,
send `Authorization: Bearer <token>` on every route but `/healthz`, `/readyz` and the Twilio
webhooks. A merchant API key (`Authorization: Bearer nfk_…`) opens one merchant's data only:
anything of another merchant is 404, operator-only routes 403.
"""


def create_app(
    settings: Settings,
    *,
    temporal_client: Client | None = None,
    session_factory: SessionFactory | None = None,
) -> FastAPI:
    """The API. Without ``temporal_client`` it connects to Temporal at start-up (and again on
    first need if Temporal was down); without ``session_factory`` it opens
    ``settings.database_url``."""
    engine: AsyncEngine | None = None
    db = session_factory
    if db is None:
        # Creating an engine opens no connection; the first query does.
        engine = db_session.create_engine(
            settings.database_url, ping_after_idle=settings.db_ping_after_idle_seconds
        )
        db = db_session.session_factory(engine)

    async def connect() -> Client:
        # The worker's connect: one place decides converter, namespace, API key and TLS.
        from notifyflow.worker import connect as connect_temporal

        return await connect_temporal(settings)

    temporal = TemporalHandle(None if temporal_client else connect, temporal_client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if temporal.client is None:
            try:
                await temporal.get()
                log.info("connected to Temporal at %s", settings.temporal_address)
            except Exception as exc:
                # Serve anyway: the directory, /healthz and /metrics need no Temporal, and
                # notification routes retry the connection (503 until it succeeds).
                log.warning("Temporal at %s not reachable yet: %s", settings.temporal_address, exc)
        yield
        if engine is not None:
            await engine.dispose()

    app = FastAPI(
        title="notifyflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # A trailing slash is a different, unknown route: a redirect would turn a POST into a
        # second request the client may not repeat.
        redirect_slashes=False,
    )
    app.state.db = db
    app.state.temporal = temporal
    app.state.settings = settings

    install_error_handlers(app)
    app.include_router(directory_routes.router)
    app.include_router(answer_template_routes.router)
    app.include_router(key_routes.router)
    app.include_router(notification_routes.router)
    app.include_router(event_routes.router)
    app.include_router(ops_routes.router)
    app.include_router(outbound_webhook_routes.router)
    app.include_router(settings_routes.router)
    app.include_router(settings_routes.sla_router)
    app.include_router(webhook_routes.router)  # Twilio webhooks: signed, no bearer token

    # Added innermost first: the catch-all wraps everything, then auth, then the body limit,
    # so an unauthenticated caller is refused before any body is read. Auth is installed even
    # without an operator token: merchant keys, when presented, still scope the request.
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    app.add_middleware(BodyLimitMiddleware, limit=MAX_BODY_BYTES)
    app.add_middleware(AuthMiddleware, token=token, db=db)
    app.add_middleware(CatchAllMiddleware)
    # Outermost: every answer is counted, refusals by the middlewares above included.
    app.add_middleware(HttpMetricsMiddleware)

    _document(app, bearer=bool(token))
    from notifyflow.tracing import instrument_app

    instrument_app(app)  # a server span per request when tracing is on; nothing otherwise
    return app


def _document(app: FastAPI, *, bearer: bool) -> None:
    """OpenAPI extras: the bearer scheme (so /docs has an Authorize button) and the error
    envelope on every operation's default response."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["ErrorEnvelope"] = ErrorEnvelope.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for defs_name, defs in (
            components["schemas"]["ErrorEnvelope"].pop("$defs", {}) or {}
        ).items():
            components["schemas"].setdefault(defs_name, defs)
        if bearer:
            components["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "NOTIFYFLOW_API_TOKEN (the operator: every merchant) or a "
                    "merchant API key nfk_… (that merchant's data only)",
                }
            }
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if bearer and not is_open(path):
                    operation["security"] = [{"bearer": []}]
                operation.setdefault("responses", {}).setdefault(
                    "default",
                    {
                        "description": "Error envelope",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorEnvelope"}
                            }
                        },
                    },
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
