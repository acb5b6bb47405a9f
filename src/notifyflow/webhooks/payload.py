"""A webhook event's body: ``{type, timestamp, data: <the notification body>}`` (DESIGN §8),
the notification as ``GET /v1/notifications/{id}`` shows it when the event is first attempted,
with resolution notes removed (they never leave the database)."""

from __future__ import annotations

import json
from typing import Any

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import WebhookEvent
from notifyflow.models.ids import format_notification_id

# Resolution notes never leave the database; the customer's phone is not an integrator's.
PRIVATE_FIELDS = frozenset({"resolution_notes", "lead_phone"})


def _without_private(answer_text: str) -> str:
    try:
        parsed = json.loads(answer_text)
    except ValueError:
        return answer_text
    if not isinstance(parsed, dict):
        return answer_text
    return json.dumps(
        {k: v for k, v in parsed.items() if k not in PRIVATE_FIELDS}, ensure_ascii=False
    )


def public_notification(view: dict[str, Any]) -> dict[str, Any]:
    data = dict(view)
    data["answers"] = [
        {**a, "answer": _without_private(a["answer"])} if isinstance(a.get("answer"), str) else a
        for a in view.get("answers", [])
    ]
    data["context"] = {
        k: v for k, v in (view.get("context") or {}).items() if k not in PRIVATE_FIELDS
    }
    return data


async def event_body(db: SessionFactory, event: WebhookEvent) -> str:
    # The read side of the client API; imported here so the webhook package stays importable
    # without the workflow modules.
    from notifyflow.starter import get_notification

    view = await get_notification(db, format_notification_id(event.notification_id))
    body = {
        "type": event.type,
        "timestamp": event.created_at.isoformat(),
        "data": public_notification(view.model_dump(mode="json")),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
