"""The error envelope ``{"error": {"code", "message", "details"}}`` for every failure (DESIGN
§4), and the two middlewares that must answer before a route runs: the body size limit and the
catch-all that turns an unexpected exception into a 500 without a stack trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError, RPCStatusCode

from notifyflow.models.errors import RETRY_AFTER_SECONDS, NotificationError

log = logging.getLogger("notifyflow.api")

MAX_BODY_BYTES = 256 * 1024
MAX_DETAILS = 50


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """What every non-2xx response carries."""

    error: ErrorBody


class TemporalUnavailable(Exception):
    """The Temporal service could not be reached; the request changed nothing."""


class ErrorResponse(JSONResponse):
    """ASCII-escaped JSON: an envelope may quote the caller's input back (a field name, an
    unknown type), and input can hold lone surrogates that UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def envelope(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return ErrorResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def _envelope_bytes(code: str, message: str) -> bytes:
    return json.dumps(
        {"error": {"code": code, "message": message, "details": None}}, separators=(",", ":")
    ).encode()


async def send_envelope(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer from raw ASGI middleware, where no Response object is at hand."""
    body = _envelope_bytes(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---- handlers -------------------------------------------------------------------------------


def _location(loc: tuple[Any, ...] | list[Any]) -> dict[str, str]:
    """``("body", "answer", 0)`` → ``{"in": "body", "path": "/answer/0"}``; query and path
    parameters keep their name."""
    where = str(loc[0]) if loc else "body"
    rest = [str(p) for p in loc[1:]]
    if where == "body":
        return {"in": "body", "path": "/" + "/".join(rest)}
    return {"in": where, "path": ".".join(rest)}


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details: list[dict[str, Any]] = []
    # A body of ten thousand bad fields gets a useful answer, not a ten-thousand-line one.
    for err in exc.errors()[:MAX_DETAILS]:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            details.append(
                {"in": "body", "path": "/", "message": f"invalid JSON: {ctx.get('error', '')}"}
            )
            continue
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        details.append(
            {**_location(tuple(err.get("loc", ()))), "message": message, "type": err.get("type")}
        )
    summary = "; ".join(f"{d['path'] or d['in']}: {d['message']}" for d in details[:3])
    return envelope(422, "invalid_input", f"invalid request: {summary}", details)


async def _notification_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotificationError)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.http_status == 503 else None
    return envelope(exc.http_status, exc.code.value, exc.message, exc.details, headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404 and exc.detail in (None, "Not Found"):
        message = f"no route {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif status == 413:
        message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
    else:
        message = str(exc.detail)
    return envelope(status, _HTTP_CODES.get(status, f"http_{status}"), message, None, exc.headers)


async def _temporal_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("temporal unavailable: %s", exc)
    return envelope(
        503,
        "temporal_unavailable",
        "the workflow service is unavailable; nothing was changed, try again shortly",
        headers={"Retry-After": "5"},
    )


async def _rpc_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RPCError)
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return await _temporal_unavailable(request, exc)
    log.error("temporal call failed on %s %s", request.method, request.url.path, exc_info=exc)
    return envelope(500, "internal_error", "an unexpected error occurred")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DataError):
        # A value the database refused that validation let through: the caller's input, so a
        # 4xx — logged, because validation should have caught it first.
        log.warning(
            "database refused a value on %s %s: %s",
            request.method,
            request.url.path,
            exc.__class__.__name__,
        )
        return envelope(422, "invalid_input", "a value is out of range or too long")
    unreachable = isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    if unreachable:
        log.error(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            exc.__class__.__name__,
        )
        return envelope(
            503,
            "database_unavailable",
            "the database is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )
    log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return envelope(500, "internal_error", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(NotificationError, _notification_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(TemporalUnavailable, _temporal_unavailable)
    app.add_exception_handler(RPCError, _rpc_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)


# ---- middlewares ----------------------------------------------------------------------------


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing passes it through
    instead of turning it into a 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Content Too Large")


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413: at once when Content-Length says so, and
    while streaming when a chunked body grows past it, so a huge body is never buffered."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_envelope(send, 400, "bad_request", "invalid Content-Length")
                    return
        if declared is not None and declared > self.limit:
            await send_envelope(
                send,
                413,
                "payload_too_large",
                f"the request body is larger than {self.limit} bytes",
                headers=[(b"connection", b"close")],
            )
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await send_envelope(
                send,
                413,
                "payload_too_large",
                f"the request body is larger than {self.limit} bytes",
                headers=[(b"connection", b"close")],
            )


class CatchAllMiddleware:
    """The last line: an exception no handler took is logged with its trace (for us) and
    answered with a 500 envelope (for the caller), never the trace itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Headers are out; the server closes the connection, which is all we can do.
                raise
            await send_envelope(send, 500, "internal_error", "an unexpected error occurred")
