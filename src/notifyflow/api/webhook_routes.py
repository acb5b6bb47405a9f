"""Twilio's webhooks: inbound WhatsApp messages and message status callbacks (DESIGN §4).

Not behind the bearer token: each request must carry a valid ``X-Twilio-Signature``, computed
by Twilio with the account's auth token over the URL it called (``NOTIFYFLOW_PUBLIC_URL`` +
path + query) and the form's parameters. Without ``TWILIO_AUTH_TOKEN`` nothing can be checked,
so every webhook is refused. A valid webhook is answered 200 with empty TwiML within
milliseconds — any error status makes Twilio retry — and the work is in :mod:`notifyflow.inbound`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response
from twilio.request_validator import RequestValidator

from notifyflow import inbound
from notifyflow.api.deps import DB, AppSettings, Temporal
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.config import Settings

log = logging.getLogger("notifyflow.api")

router = APIRouter(prefix="/v1/webhooks/twilio", tags=["webhooks"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SIGNATURE_HEADER = "X-Twilio-Signature"

_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Handled (or a duplicate): empty TwiML", "content": {"text/xml": {}}},
    403: {"model": ErrorEnvelope, "description": "Missing or invalid X-Twilio-Signature"},
    422: {"model": ErrorEnvelope, "description": "A signed form without the fields it needs"},
    503: {"model": ErrorEnvelope, "description": "Database or Temporal unavailable: retry"},
}


def signed_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: the public origin, not whatever host the proxy forwarded."""
    query = request.url.query
    return f"{settings.public_url}{request.url.path}" + (f"?{query}" if query else "")


async def signed_form(request: Request, settings: Settings) -> dict[str, str]:
    """The form's fields once the signature is proven; 403 otherwise."""
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    if not token:
        raise HTTPException(
            403,
            "Twilio webhooks are refused: TWILIO_AUTH_TOKEN is not set, so their signature "
            "cannot be checked",
        )
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise HTTPException(403, f"missing {SIGNATURE_HEADER} header")
    try:
        form = await request.form()
    except HTTPException:
        raise
    except Exception:  # noqa: BLE001 - a malformed body is the sender's problem, never a 500
        raise HTTPException(400, "the body is not a valid form") from None
    if any(not isinstance(value, str) for _, value in form.multi_items()):
        raise HTTPException(403, f"invalid {SIGNATURE_HEADER}: file uploads are never signed")
    if not RequestValidator(token).validate(signed_url(settings, request), form, signature):
        raise HTTPException(
            403,
            f"invalid {SIGNATURE_HEADER}: check TWILIO_AUTH_TOKEN, and that "
            "NOTIFYFLOW_PUBLIC_URL is the origin Twilio calls",
        )
    return {name: str(value) for name, value in form.multi_items()}


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post(
    "/messages",
    summary="Twilio inbound WhatsApp message",
    response_class=Response,
    responses=_RESPONSES,
)
async def twilio_message(
    request: Request, db: DB, temporal: Temporal, settings: AppSettings
) -> Response:
    """A customer's message is stored and opens their 24-hour window; a merchant user's message
    may answer a notification (it quotes the campaign, names ``NOTIF_<n>``, or they have exactly
    one open notification), and they get a short WhatsApp reply either way."""
    form = await signed_form(request, settings)
    message = inbound.InboundMessage.from_form(form)
    outcome = await inbound.receive_message(
        db, temporal.get, message, task_queue=settings.temporal_task_queue
    )
    log.info("twilio message %s: %s", message.message_sid, outcome.value)
    return _twiml()


@router.post(
    "/status",
    summary="Twilio message status callback",
    response_class=Response,
    responses=_RESPONSES,
)
async def twilio_status(
    request: Request, db: DB, temporal: Temporal, settings: AppSettings
) -> Response:
    """Moves the delivery row forward; a customer answer that failed with 63016 is sent again
    as the template, any other failure of it marks the notification ``delivery_failed``."""
    form = await signed_form(request, settings)
    callback = inbound.StatusCallback.from_form(form)
    outcome = await inbound.receive_status(
        db, temporal.get, callback, task_queue=settings.temporal_task_queue
    )
    log.info(
        "twilio status %s %s (%s): %s",
        callback.message_sid,
        callback.status,
        callback.error_code or "-",
        outcome.value,
    )
    return _twiml()
