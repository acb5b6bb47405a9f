"""Notification routes: thin HTTP over ``notifyflow.starter`` (DESIGN §4, §5)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from notifyflow import corrections, directory, metrics, starter
from notifyflow.api.deps import DB, AppSettings, Temporal
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import (
    CallerDep,
    check_answerer,
    check_notification,
    check_request_conversation,
    notification_not_found,
)
from notifyflow.models.corrections import CorrectionAccepted
from notifyflow.models.directory import Id
from notifyflow.models.errors import NotificationError, RefusalCode, parse_id
from notifyflow.models.ids import (
    INT32_MAX,
    format_notification_id,
)
from notifyflow.models.notification import NotificationStatus, NotificationType
from notifyflow.models.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from notifyflow.models.text import plain_text, unstorable
from notifyflow.models.views import NotificationView
from notifyflow.models.workflow_io import (
    AnswerAccepted,
    AnswerSource,
    CustomerMessageAccepted,
    Priority,
)
from notifyflow.notification_pages import list_notifications_page

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

_TYPES = ", ".join(t.value for t in NotificationType)


class NotificationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "user_question_request",
                    "conversation_id": 1,
                    "context": {"question": "What are your business hours on Sunday?"},
                    "idempotency_key": "voyager-msg-8812",
                },
                {
                    "type": "user_support_request",
                    "conversation_id": 1,
                    "context": {"support_request_reason": "The parcel arrived damaged"},
                },
            ]
        },
    )

    # A plain string, not the enum, so an unknown type is refused with code unknown_type.
    type: str = Field(description=f"One of: {_TYPES}")
    conversation_id: Id
    context: dict[str, Any] = Field(
        description="The type's requested fields: question, or support_request_reason"
    )
    idempotency_key: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
            AfterValidator(plain_text),
        ]
        | None
    ) = Field(default=None, description="The same key returns the same notification")
    priority: Priority = Field(
        default=Priority.normal,
        description="urgent: the on-call users are asked at once and the timers are halved",
    )


class NotificationAccepted(BaseModel):
    notification_id: str
    status: str


class AnswerBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"answered_by": 2, "answer": {"answer": "We open 10:00–16:00 on Sundays."}},
                {"answered_by": 2, "answer_json": '{"answer": "We open 10:00–16:00 on Sundays."}'},
                {"answered_by": 2, "template": "hours"},
            ]
        },
    )

    answered_by: Id = Field(description="The answering merchant user's id")
    answer: dict[str, Any] | None = Field(
        default=None, description="The answer as an object (give this or answer_json)"
    )
    answer_json: Annotated[str, StringConstraints(max_length=64_000)] | None = Field(
        default=None, description="The answer as JSON text (give this or answer)"
    )
    template: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="The code of one of the merchant's answer templates for the notification's "
        'type (the same as answer {"template": code})',
    )


class CloseBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Handled by phone"}]}
    )

    reason: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=1000),
            AfterValidator(plain_text),
        ]
        | None
    ) = None


def _public_id(text: str) -> str:
    """The canonical ``NOTIF_<n>``; malformed ids are refused before any query or RPC runs."""
    return format_notification_id(parse_id(text, location="path"))


def _check_storable(value: Any, path: str) -> None:
    found = unstorable(value, path)
    if found:
        raise NotificationError(
            RefusalCode.invalid_input,
            f"{found[0]['path']}: {found[0]['message']}",
            details=found,
        )


def _check_type(value: str) -> None:
    if value not in NotificationType.__members__:
        raise NotificationError(
            RefusalCode.unknown_type,
            f"unknown notification type {value[:64]!r}; expected one of {_TYPES}",
            details=[{"in": "body", "path": "/type", "message": f"expected one of {_TYPES}"}],
        )


def _e(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorEnvelope} for code in codes}


@router.post("", status_code=202, responses=_e(400, 404, 409, 422, 503))
async def request_notification(
    body: NotificationRequest,
    response: Response,
    db: DB,
    temporal: Temporal,
    settings: AppSettings,
    caller: CallerDep,
) -> NotificationAccepted:
    """Open a notification: the merchant's admins (or the classified team) are asked on
    WhatsApp. Answers 202 once the notification is recorded (its workflow is started at once,
    or by the workers' sweeper within a minute of Temporal answering again); 503 means nothing
    was recorded. The same ``idempotency_key`` returns the same notification."""
    _check_type(body.type)
    _check_storable(body.context, "/context")
    # A user's mistake is a 4xx even while Temporal is down: check before connecting.
    starter.check_request(body.type, body.context)
    await check_request_conversation(db, caller, body.conversation_id)
    if not await directory.merchant_is_active(db, body.conversation_id):
        raise NotificationError(
            RefusalCode.conflict,
            "this conversation's merchant was deactivated and takes no new notifications",
            details=[{"in": "body", "path": "/conversation_id", "message": "merchant deactivated"}],
        )
    view = await starter.request_notification(
        await temporal.get(),
        db,
        type=body.type,
        conversation_id=body.conversation_id,
        context=body.context,
        idempotency_key=body.idempotency_key,
        settings=settings,
        priority=body.priority,
    )
    if caller.scoped and view.merchant_id != caller.merchant_id:
        # Idempotency keys are global: another merchant's request used this one. Say no
        # more than that (not its id, not its status).
        raise NotificationError(
            RefusalCode.conflict,
            "idempotency_key is already used by another request; choose another key",
            details=[{"in": "body", "path": "/idempotency_key", "message": "already used"}],
        )
    response.headers["Location"] = f"/v1/notifications/{view.notification_id}"
    metrics.count_request(view.type, view.priority)
    return NotificationAccepted(notification_id=view.notification_id, status=view.status)


@router.get("", responses=_e(422))
async def list_notifications(
    db: DB,
    caller: CallerDep,
    status: NotificationStatus | None = None,
    type: NotificationType | None = None,
    merchant_id: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(max_length=512, description="The previous page's next_cursor")
    ] = None,
) -> Page[NotificationView]:
    """Notifications, newest first, filtered by status, type and merchant: a page of them. A
    merchant key sees its own merchant's only, whatever ``merchant_id`` says."""
    if caller.scoped:
        if merchant_id is not None and merchant_id != caller.merchant_id:
            return Page[NotificationView](items=[], next_cursor=None)
        merchant_id = caller.merchant_id
    return await list_notifications_page(
        db,
        status=status.value if status else None,
        type=type.value if type else None,
        merchant_id=merchant_id,
        limit=limit,
        cursor=cursor,
    )


@router.get("/{notification_id}", responses=_e(400, 404))
async def get_notification(notification_id: str, db: DB, caller: CallerDep) -> NotificationView:
    """The notification: status, recipients, every answer attempt, delivery."""
    public_id = _public_id(notification_id)
    view = await starter.get_notification(db, public_id)
    if caller.scoped and view.merchant_id != caller.merchant_id:
        raise notification_not_found(public_id)
    return view


@router.post("/{notification_id}/answer", responses=_e(400, 403, 404, 409, 422, 503))
async def answer_notification(
    notification_id: str,
    body: AnswerBody,
    db: DB,
    temporal: Temporal,
    settings: AppSettings,
    caller: CallerDep,
) -> AnswerAccepted:
    """Answer as a merchant user. Returns once the answer is accepted; validation,
    localization and delivery go on durably in the workflow."""
    public_id = _public_id(notification_id)
    given = [body.answer, body.answer_json, body.template]
    if sum(value is not None for value in given) != 1:
        message = (
            "give exactly one of answer (an object), answer_json (a string) or template "
            "(an answer template's code)"
        )
        raise NotificationError(
            RefusalCode.invalid_input,
            message,
            details=[
                {"in": "body", "path": "/answer", "message": message},
                {"in": "body", "path": "/answer_json", "message": message},
                {"in": "body", "path": "/template", "message": message},
            ],
        )
    if body.template is not None:
        # Resolved by the starter for the notification's merchant and type.
        _check_storable(body.template, "/template")
        body.answer = {"template": body.template}
    if body.answer is not None:
        _check_storable(body.answer, "/answer")
    else:
        _check_storable(body.answer_json, "/answer_json")
        try:
            # Escapes such as \u0000 only become NUL once parsed; text that is not JSON at
            # all is the starter's to refuse (not_json).
            _check_storable(json.loads(body.answer_json or ""), "/answer_json")
        except ValueError:
            pass
    answer: dict[str, Any] | str = (
        body.answer if body.answer is not None else body.answer_json or ""
    )
    await check_notification(db, caller, public_id)
    try:
        await check_answerer(db, caller, body.answered_by)
        await directory.check_active_answerer(db, body.answered_by)
    except NotificationError as refusal:
        await starter.record_refused_answer(
            db,
            public_id,
            answered_by=body.answered_by,
            answer=answer,
            source=AnswerSource.api,
            error=refusal,
        )
        metrics.count_refused_answer(refusal.code.value)
        raise
    try:
        return await starter.answer_notification(
            await temporal.get(),
            db,
            public_id,
            answered_by=body.answered_by,
            answer=answer,
            source=AnswerSource.api,
            settings=settings,
        )
    except NotificationError as refusal:
        metrics.count_refused_answer(refusal.code.value)
        raise


@router.post("/{notification_id}/close", responses=_e(400, 404, 409, 503))
async def close_notification(
    notification_id: str,
    db: DB,
    temporal: Temporal,
    settings: AppSettings,
    caller: CallerDep,
    body: Annotated[CloseBody | None, Body()] = None,
) -> NotificationView:
    """Close an open notification as an operator; the customer and the recipients are told."""
    public_id = _public_id(notification_id)
    await check_notification(db, caller, public_id)
    return await starter.close_notification(
        await temporal.get(),
        db,
        public_id,
        reason=body.reason if body else None,
        closed_by="api",
        settings=settings,
    )


class CustomerMessageBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Also, can it be gift-wrapped?"}]},
    )

    text: str = Field(min_length=1, max_length=starter.MAX_FOLLOW_UP_CHARS)
    message_id: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
            AfterValidator(plain_text),
        ]
        | None
    ) = Field(
        default=None,
        description="Voyager's id for the message: sending it again is the same follow-up",
    )


@router.post(
    "/{notification_id}/customer-messages",
    status_code=202,
    responses=_e(400, 404, 409, 422, 503),
)
async def add_customer_message(
    notification_id: str,
    body: CustomerMessageBody,
    db: DB,
    temporal: Temporal,
    settings: AppSettings,
    caller: CallerDep,
) -> CustomerMessageAccepted:
    """The customer wrote again about an open notification: the message joins it (timeline,
    ``context.customer_messages``) and is forwarded to its recipients — free-form in each
    one's 24 h window, a template outside it. 409 once it is answered or closed."""
    public_id = _public_id(notification_id)
    _check_storable(body.text, "/text")
    await check_notification(db, caller, public_id)
    return await starter.add_customer_message(
        await temporal.get(),
        db,
        public_id,
        body.text,
        settings=settings,
        message_id=body.message_id,
    )


class CorrectionBody(AnswerBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "answered_by": 2,
                    "answer": {"answer": "Sorry: on Sundays we open 11:00–16:00."},
                    "correction_id": "fix-sunday-hours",
                }
            ]
        },
    )

    correction_id: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
            AfterValidator(plain_text),
        ]
        | None
    ) = Field(
        default=None,
        description="The client's id for this correction: sending it again is the same one",
    )


def _body_answer(body: AnswerBody) -> dict[str, Any] | str:
    """The answer as given (object or JSON text); refuses both or neither, and what no
    database can store, as the answer route does."""
    if (body.answer is None) == (body.answer_json is None):
        message = "give exactly one of answer (an object) or answer_json (a string)"
        raise NotificationError(
            RefusalCode.invalid_input,
            message,
            details=[
                {"in": "body", "path": "/answer", "message": message},
                {"in": "body", "path": "/answer_json", "message": message},
            ],
        )
    if body.answer is not None:
        _check_storable(body.answer, "/answer")
        return body.answer
    _check_storable(body.answer_json, "/answer_json")
    try:
        _check_storable(json.loads(body.answer_json or ""), "/answer_json")
    except ValueError:
        pass
    return body.answer_json or ""


@router.post(
    "/{notification_id}/correct", status_code=202, responses=_e(400, 403, 404, 409, 422, 503)
)
async def correct_notification(
    notification_id: str,
    body: CorrectionBody,
    db: DB,
    temporal: Temporal,
    settings: AppSettings,
    caller: CallerDep,
) -> CorrectionAccepted:
    """Correct a delivered answer (DESIGN §10): who may answer may correct; the correction is
    validated like an answer. The new version is recorded (the question's Document shows it)
    before this returns; the customer gets it by the 24 h rule, durably. 409 ``not_delivered``
    unless the notification is delivered. The same ``correction_id`` (or, without one, the
    same person sending the current version again) is the same correction: sent once."""
    public_id = _public_id(notification_id)
    answer = _body_answer(body)
    await check_notification(db, caller, public_id)
    await check_answerer(db, caller, body.answered_by)
    return await corrections.correct_notification(
        await temporal.get(),
        db,
        public_id,
        answered_by=body.answered_by,
        answer=answer,
        source=AnswerSource.api,
        correction_id=body.correction_id,
        settings=settings,
    )
