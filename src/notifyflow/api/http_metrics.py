"""Request count and latency by route template and status (``notifyflow_http_*``): the route
template (``/v1/notifications/{notification_id}``), never the raw path, so the label set stays
bounded whatever ids callers send. Unmatched paths count as ``<unmatched>``."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifyflow import metrics

# Label values come from this set only: a client inventing methods cannot grow the series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "GET")
            metrics.observe_http(
                method if method in METHODS else "OTHER",
                template,
                status,
                time.perf_counter() - started,
            )
