"""``GET /v1/notifications/{id}/events``: the timeline as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from notifyflow import starter
from notifyflow.api.deps import DB
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.event_stream import TimelineHub
from notifyflow.api.scope import CallerDep, check_notification
from notifyflow.models.ids import parse_notification_id

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


def hub(request: Request, db: DB) -> TimelineHub:
    found: TimelineHub | None = getattr(request.app.state, "timeline_hub", None)
    if found is None:
        found = request.app.state.timeline_hub = TimelineHub(db)
    return found


@router.get(
    "/{notification_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        400: {"model": ErrorEnvelope},
        404: {"model": ErrorEnvelope},
    },
)
async def notification_events(
    notification_id: str,
    request: Request,
    db: DB,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Every timeline entry (requested, sent, answered, delivered, closed …) as an SSE event,
    past ones first, then as they happen; the stream ends at the terminal state. Each event's
    ``id`` is its position: reconnect with ``Last-Event-ID`` to resume after it. A comment
    line is sent every 15 s as a heartbeat."""
    view = await starter.get_notification(db, notification_id)  # 400 / 404 as the GET route
    await check_notification(db, caller, view.notification_id)
    after = -1
    if last_event_id is not None and last_event_id.strip().isdigit():
        after = int(last_event_id.strip())
    stream = hub(request, db).stream(parse_notification_id(view.notification_id), after)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
