"""The one client-side API: request, answer, close, get, list.

The CLI, the HTTP API and the LLM tools are thin layers over these functions. User mistakes
raise ``NotificationError`` (with its HTTP status) and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from notifyflow.config import Settings, get_settings
from notifyflow.db import answer_history
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Conversation,
    ConversationUser,
    Delivery,
    Document,
    MerchantUser,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.faults import fault_point
from notifyflow.models.answers import parse_answer, validate_answer
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import (
    MalformedNotificationId,
    format_notification_id,
    parse_notification_id,
    workflow_id_for,
)
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    NotificationStatus,
    NotificationType,
    headline,
)
from notifyflow.models.text import unstorable
from notifyflow.models.views import (
    AnswerView,
    DeliveryView,
    NotificationView,
    RecipientView,
    TimelineEntry,
)
from notifyflow.models.vocabulary import DeliveryKind, RecipientKind
from notifyflow.models.workflow_io import (
    AnswerAccepted,
    AnswerSource,
    AnswerSubmission,
    CloseRequest,
    NotificationWorkflowInput,
    Timing,
)
from notifyflow.workflows.notification import NotificationWorkflow, initial_search_attributes

log = logging.getLogger(__name__)

MAX_CONTEXT_BYTES = 32_000
MAX_FIELD_CHARS = 4_000
CLOSE_WAIT = timedelta(seconds=20)
# A request is recorded first; its workflow start then gets this long. Past it (Temporal away or
# frozen) the request still succeeds: the row is durable and the workers' sweeper starts the
# workflow once Temporal answers (notifyflow.sweeper).
START_WAIT = timedelta(seconds=5)
# The answer route returns within 10 s (DESIGN §7): the update gets this long to be accepted.
ANSWER_WAIT = timedelta(seconds=8)


def parse_id(notification_id: str) -> int:
    try:
        return parse_notification_id(notification_id)
    except MalformedNotificationId as exc:
        raise NotificationError(RefusalCode.malformed_id, str(exc)) from None


def timing_for(type: NotificationType, settings: Settings) -> Timing:
    """Per-type overrides in NOTIFICATION_CONFIG win over the environment's defaults."""
    cfg = NOTIFICATION_CONFIG[type]
    return Timing(
        remind_after=cfg.remind_after or settings.remind_after,
        escalate_after=cfg.escalate_after or settings.escalate_after,
        auto_close_after=cfg.auto_close_after or settings.auto_close_after,
    )


def check_request(type: str, context: Any) -> tuple[NotificationType, dict[str, Any]]:
    try:
        kind = NotificationType(type)
    except ValueError:
        known = ", ".join(t.value for t in NotificationType)
        raise NotificationError(
            RefusalCode.unknown_type, f"unknown notification type {type!r}; known: {known}"
        ) from None
    if not isinstance(context, dict):
        raise NotificationError(RefusalCode.invalid_input, "context must be a JSON object")
    found = unstorable(context, "/context")
    if found:
        raise NotificationError(
            RefusalCode.invalid_input,
            f"context cannot be stored: {found[0]['path']}: {found[0]['message']}",
            details=found,
        )
    if len(json.dumps(context, default=str)) > MAX_CONTEXT_BYTES:
        raise NotificationError(RefusalCode.invalid_input, "context is too large")
    cfg = NOTIFICATION_CONFIG[kind]
    missing = [
        f
        for f in cfg.requested_fields
        if not isinstance(context.get(f), str) or not str(context.get(f)).strip()
    ]
    if missing:
        raise NotificationError(
            RefusalCode.missing_field,
            f"context lacks required field(s) for {kind.value}: {', '.join(missing)}",
            details=[
                {"path": f"/context/{f}", "message": "required non-empty string"} for f in missing
            ],
        )
    for f in cfg.requested_fields:
        if len(context[f]) > MAX_FIELD_CHARS:
            raise NotificationError(
                RefusalCode.invalid_input,
                f"context field {f!r} is longer than {MAX_FIELD_CHARS} characters",
                details=[{"path": f"/context/{f}", "message": "too long"}],
            )
    clean = dict(context)
    for f in cfg.requested_fields:
        clean[f] = context[f].strip()
    return kind, clean


async def request_notification(
    client: Client,
    db: SessionFactory,
    *,
    type: str,
    conversation_id: int,
    context: dict[str, Any],
    idempotency_key: str | None = None,
    settings: Settings | None = None,
) -> NotificationView:
    """Validate, record and start a notification. Raises NotificationError on bad input.

    Everything is checked before anything durable happens; the same ``idempotency_key``
    returns the same notification (and its workflow is started once).
    """
    settings = settings or get_settings()
    kind, context = check_request(type, context)
    notification, admin_ids, created = await _record(
        db, kind, context, conversation_id, idempotency_key
    )
    fault_point("exit_after_record")
    await _start_soon(client, notification, admin_ids, settings)
    if created:
        # Just written, so nothing else is attached yet: no need to read it back.
        return _view(notification, [], [], None)
    return await get_notification(db, format_notification_id(notification.id))


async def _record(
    db: SessionFactory,
    kind: NotificationType,
    context: dict[str, Any],
    conversation_id: int,
    idempotency_key: str | None,
) -> tuple[Notification, list[int], bool]:
    """Write the notification (and a question's Document) in one transaction; with an
    ``idempotency_key`` seen before, return that notification instead. Returns the row, the
    merchant's admin ids and True when new."""
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
        raise NotificationError(
            RefusalCode.invalid_input, "idempotency_key must be 1 to 200 characters"
        )
    cfg = NOTIFICATION_CONFIG[kind]
    async with db() as session:
        if idempotency_key:
            existing = await session.scalar(
                select(Notification).where(Notification.idempotency_key == idempotency_key)
            )
            if existing is not None:
                return existing, await _admin_ids(session, existing.merchant_id), False
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None or conversation.merchant_user_id is not None:
            raise NotificationError(
                RefusalCode.not_found, f"conversation {conversation_id} not found"
            )
        admins = await _admin_ids(session, conversation.merchant_id)
        if not admins:
            raise NotificationError(
                RefusalCode.invalid_input,
                f"merchant {conversation.merchant_id} has no admin who could answer",
            )
        customer = await session.get(ConversationUser, conversation.conversation_user_id)
        context["lead_phone"] = customer.phone if customer else None
        notification = Notification(
            type=kind.value,
            status=NotificationStatus.requested.value,
            merchant_id=conversation.merchant_id,
            conversation_id=conversation.id,
            context=context,
            answer_schema=cfg.answer_json_schema(),
            allow_multiple_answers=cfg.allow_multiple_answers,
            idempotency_key=idempotency_key,
        )
        if kind is NotificationType.user_question_request:
            # The question joins the knowledge base now; the answer fills it in later.
            document = Document(
                merchant_id=conversation.merchant_id,
                category="UserQuestion",
                title=context["question"],
                content="",
            )
            session.add(document)
            await session.flush()
            notification.document_id = document.id
            notification.context = {**context, "document_id": document.id}
        session.add(notification)
        try:
            await session.commit()
        except IntegrityError:
            # The same idempotency key raced in from another request: return that one.
            await session.rollback()
            existing = await session.scalar(
                select(Notification).where(Notification.idempotency_key == idempotency_key)
            )
            if existing is None:
                raise
            return existing, admins, False
        return notification, admins, True


async def _admin_ids(session: AsyncSession, merchant_id: int) -> list[int]:
    return list(
        (
            await session.scalars(
                select(MerchantUser.id)
                .where(MerchantUser.merchant_id == merchant_id, MerchantUser.user_type == "admin")
                .order_by(MerchantUser.id)
            )
        ).all()
    )


async def answer_new_notification(
    client: Client,
    db: SessionFactory,
    *,
    type: str,
    conversation_id: int,
    context: dict[str, Any],
    answered_by: int,
    answer: dict[str, Any] | str,
    source: AnswerSource = AnswerSource.api,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
) -> AnswerAccepted:
    """An answer with no prior request: the notification is created already answered, with
    update-with-start, so the answer and the workflow start are one atomic step."""
    settings = settings or get_settings()
    kind, context = check_request(type, context)
    async with db() as session:
        conversation = await session.get(Conversation, conversation_id)
        user = await session.get(MerchantUser, answered_by)
    if conversation is None or conversation.merchant_user_id is not None:
        raise NotificationError(RefusalCode.not_found, f"conversation {conversation_id} not found")
    if user is None or user.merchant_id != conversation.merchant_id or user.user_type != "admin":
        raise NotificationError(
            RefusalCode.not_allowed,
            f"merchant user {answered_by} may not answer for this conversation's merchant",
        )
    text = _answer_text(answer)
    # Checked before anything is written, so a bad answer leaves no notification behind.
    validate_answer(
        parse_answer(text),
        NOTIFICATION_CONFIG[kind].answer_json_schema(),
        NOTIFICATION_CONFIG[kind].answered_fields,
    )
    notification, admin_ids, _ = await _record(db, kind, context, conversation_id, idempotency_key)
    input = workflow_input(notification, admin_ids, settings).model_copy(
        update={"answered_directly": True, "allowed_answerers": [answered_by]}
    )
    public = format_notification_id(notification.id)
    start = WithStartWorkflowOperation(
        NotificationWorkflow.run,
        input,
        id=workflow_id_for(notification.id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_search_attributes(input),
        static_summary=f"{public} · {notification.type} · answered directly",
    )
    submission = AnswerSubmission(
        notification_id=public, answered_by=answered_by, answer_json=text, source=source
    )
    try:
        accepted: AnswerAccepted = await asyncio.wait_for(
            client.execute_update_with_start_workflow(
                "submit_answer",
                submission,
                start_workflow_operation=start,
                result_type=AnswerAccepted,
                rpc_timeout=ANSWER_WAIT,
            ),
            ANSWER_WAIT.total_seconds(),
        )
    except WorkflowUpdateFailedError as exc:
        raise _refusal_from(exc.cause) from None
    except (TimeoutError, RPCError) as exc:
        # The row is recorded: the sweeper starts its workflow (asking the admins) once
        # Temporal answers. Say so, rather than "nothing was changed".
        log.warning("%s: recorded, answer not submitted (%s)", public, exc.__class__.__name__)
        raise NotificationError(
            RefusalCode.not_ready,
            f"{public} was recorded but the answer could not be submitted now (the workflow "
            f"service did not answer); its admins will be asked once it does — answer {public} "
            "then",
            details={"notification_id": public},
        ) from None
    return accepted


def workflow_input(
    notification: Notification, admin_ids: list[int], settings: Settings
) -> NotificationWorkflowInput:
    kind = NotificationType(notification.type)
    cfg = NOTIFICATION_CONFIG[kind]
    return NotificationWorkflowInput(
        notification_id=notification.id,
        type=kind,
        merchant_id=notification.merchant_id,
        conversation_id=notification.conversation_id,
        headline=headline(notification.type, notification.context),
        answer_schema=notification.answer_schema,
        answered_fields=list(cfg.answered_fields),
        allow_multiple_answers=notification.allow_multiple_answers,
        timing=timing_for(kind, settings),
        admin_ids=admin_ids,
    )


def _summary(notification: Notification, input: NotificationWorkflowInput) -> str:
    public = format_notification_id(notification.id)
    headline = input.headline if len(input.headline) <= 80 else input.headline[:79] + "…"
    return f'{public} · {notification.type} · "{headline}"'


async def ensure_started(
    client: Client,
    notification: Notification,
    admin_ids: list[int],
    settings: Settings,
    *,
    close: CloseRequest | None = None,
) -> bool:
    """Start the workflow, or join the one already running: safe to call again. With
    ``close``, the close signal goes with the start (signal-with-start), so a notification
    whose workflow never ran is closed without anyone being asked. False when the workflow
    already ran to its end."""
    input = workflow_input(notification, admin_ids, settings)
    options: dict[str, Any] = {}
    if close is not None:
        options = {"start_signal": "close", "start_signal_args": [close]}
    else:
        options = {
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "request_eager_start": True,
        }
    try:
        await client.start_workflow(
            NotificationWorkflow.run,
            input,
            id=workflow_id_for(notification.id),
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(input),
            static_summary=_summary(notification, input),
            rpc_timeout=START_WAIT,
            **options,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def _start_soon(
    client: Client, notification: Notification, admin_ids: list[int], settings: Settings
) -> None:
    """Start the just-recorded notification's workflow within START_WAIT. A failure here is
    not the caller's: the row is durable, and the sweeper starts its workflow later."""
    public = format_notification_id(notification.id)
    try:
        await asyncio.wait_for(
            ensure_started(client, notification, admin_ids, settings),
            START_WAIT.total_seconds(),
        )
    except (TimeoutError, RPCError) as exc:
        log.warning(
            "%s: recorded, but its workflow could not be started now (%s); the sweeper will "
            "start it once Temporal answers",
            public,
            exc.__class__.__name__,
        )


def _answer_text(answer: dict[str, Any] | str) -> str:
    if isinstance(answer, str):
        return answer
    return json.dumps(answer, ensure_ascii=False)


async def answer_notification(
    client: Client,
    db: SessionFactory,
    notification_id: str,
    *,
    answered_by: int,
    answer: dict[str, Any] | str,
    source: AnswerSource = AnswerSource.api,
    settings: Settings | None = None,
) -> AnswerAccepted:
    """Submit an answer through the workflow's update; returns once it is accepted (delivery
    goes on durably), within ANSWER_WAIT. Refusals raise NotificationError and are kept in the
    answer history; ``not_ready`` (try again) is not a refusal of the answer."""
    n = parse_id(notification_id)
    public = format_notification_id(n)
    text = _answer_text(answer)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id_for(n))
    submission = AnswerSubmission(
        notification_id=public, answered_by=answered_by, answer_json=text, source=source
    )
    try:
        try:
            return await _submit(handle, submission)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # No workflow under that id: a recorded notification whose start failed is
            # started now (the answer then goes to it); anything else is refused truthfully.
            await _start_recorded_or_refuse(client, db, n, settings or get_settings())
            return await _submit(handle, submission)
    except WorkflowUpdateFailedError as exc:
        error = _refusal_from(exc.cause)
    except NotificationError as exc:
        error = exc
    if error.code is not RefusalCode.not_ready:
        await _record_refusal(db, n, answered_by, source, text, error)
    raise error


async def _submit(handle: WorkflowHandle[Any, Any], submission: AnswerSubmission) -> AnswerAccepted:
    try:
        accepted: AnswerAccepted = await asyncio.wait_for(
            handle.execute_update(
                "submit_answer", submission, result_type=AnswerAccepted, rpc_timeout=ANSWER_WAIT
            ),
            ANSWER_WAIT.total_seconds(),
        )
    except TimeoutError:
        raise NotificationError(
            RefusalCode.not_ready,
            f"{submission.notification_id} did not take the answer within "
            f"{ANSWER_WAIT.total_seconds():.0f} s (its worker is busy or away); it may still "
            "take it: sending the same answer again is safe",
        ) from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE):
            raise NotificationError(
                RefusalCode.not_ready,
                f"the workflow service did not answer for {submission.notification_id}; "
                "sending the same answer again is safe",
            ) from None
        raise
    return accepted


async def _start_recorded_or_refuse(
    client: Client, db: SessionFactory, n: int, settings: Settings
) -> None:
    """The notification has no workflow under its id. A ``requested`` row whose start failed
    gets its workflow now; otherwise raise the refusal that names the true state."""
    public = format_notification_id(n)
    async with db() as session:
        row = await session.get(Notification, n)
        admins = await _admin_ids(session, row.merchant_id) if row is not None else []
    if row is None:
        raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
    status = NotificationStatus(row.status)
    if status is not NotificationStatus.requested:
        raise _state_refusal(public, status, "answered")
    if not await ensure_started(client, row, admins, settings):
        raise NotificationError(
            RefusalCode.closed,
            f"{public}'s workflow has already ended though its record says requested; "
            "an operator can close it",
        )
    log.warning("%s: its workflow had not started; started it for an answer", public)


def _state_refusal(public: str, status: NotificationStatus, verb: str) -> NotificationError:
    """The refusal for acting on a notification that is no longer requested, naming its
    state."""
    code = (
        RefusalCode.closed
        if status in (NotificationStatus.closed, NotificationStatus.expired)
        else RefusalCode.already_answered
    )
    return NotificationError(code, f"{public} is {status.value} and cannot be {verb}")


def _refusal_from(cause: BaseException | None) -> NotificationError:
    if isinstance(cause, ApplicationError) and cause.type and cause.type in RefusalCode.__members__:
        details = cause.details[0] if cause.details else {}
        return NotificationError(
            RefusalCode(cause.type),
            cause.message,
            details.get("details") if isinstance(details, dict) else None,
        )
    raise RuntimeError(f"answer update failed: {cause}") from cause


async def record_refused_answer(
    db: SessionFactory,
    notification_id: str,
    *,
    answered_by: int,
    answer: dict[str, Any] | str,
    source: AnswerSource,
    error: NotificationError,
) -> None:
    """Keep an answer refused before it reached the workflow (the API's access checks: a
    merchant key answering as another merchant's user) in the answer history too."""
    await _record_refusal(
        db, parse_id(notification_id), answered_by, source, _answer_text(answer), error
    )


async def _record_refusal(
    db: SessionFactory,
    n: int,
    answered_by: int,
    source: AnswerSource,
    text: str,
    error: NotificationError,
) -> None:
    """Every attempt joins the answer history, refused ones included."""
    if error.code in (RefusalCode.not_found, RefusalCode.malformed_id):
        return
    await answer_history.record_refused_answer(
        db,
        notification_id=n,
        answered_by=answered_by,
        source=source.value,
        text=text,
        code=error.code.value,
        reason=error.message,
        at=utcnow(),
    )


async def close_notification(
    client: Client,
    db: SessionFactory,
    notification_id: str,
    *,
    reason: str | None = None,
    closed_by: str | None = None,
    settings: Settings | None = None,
) -> NotificationView:
    """Close an unanswered notification (status ``closed``); the recipients are told.

    Works whatever became of its workflow: a running one is signalled; one that never started
    is started with the close signal (nobody is asked); one that ended while its row still says
    ``requested`` has the row closed directly."""
    n = parse_id(notification_id)
    public = format_notification_id(n)
    view = await get_notification(db, public)
    if view.status != NotificationStatus.requested.value:
        raise _state_refusal(public, NotificationStatus(view.status), "closed")
    request = CloseRequest(reason=reason, closed_by=closed_by)
    handle = client.get_workflow_handle(workflow_id_for(n))
    try:
        await handle.signal(NotificationWorkflow.close, request, rpc_timeout=START_WAIT)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        await _close_without_workflow(client, db, n, request, settings or get_settings())
        # The row is closed already; the workflow started with the close asks nobody.
        return await get_notification(db, public)
    try:
        # The workflow finishes in a moment; wait so the caller sees the closed state.
        await asyncio.wait_for(handle.result(), CLOSE_WAIT.total_seconds())
    except TimeoutError:
        log.warning("%s: close signalled, not finished within %s", public, CLOSE_WAIT)
    except Exception as exc:  # noqa: BLE001 - the status below tells the caller what happened
        log.warning("%s: waiting for the close failed: %s", public, exc)
    view = await get_notification(db, public)
    if view.status not in (NotificationStatus.closed.value, NotificationStatus.requested.value):
        # An answer won the race: the close was ignored.
        raise _state_refusal(public, NotificationStatus(view.status), "closed")
    return view


async def _close_without_workflow(
    client: Client, db: SessionFactory, n: int, request: CloseRequest, settings: Settings
) -> None:
    public = format_notification_id(n)
    async with db() as session:
        row = await session.get(Notification, n)
        if row is None:
            raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
        admins = await _admin_ids(session, row.merchant_id)
    if await ensure_started(client, row, admins, settings, close=request):
        # Started with the close signal first: it ends closed without asking anyone, whenever
        # a worker runs it. The row is closed now, so the caller reads the truth at once.
        log.warning("%s: its workflow had never started; started it closed", public)
    else:
        log.warning("%s: its workflow had ended; closing the row directly", public)
    async with db() as session:
        now = utcnow()
        await session.execute(
            update(Notification)
            .where(
                Notification.id == n,
                Notification.status == NotificationStatus.requested.value,
            )
            .values(
                status=NotificationStatus.closed.value,
                close_reason=request.reason,
                closed_at=now,
                updated_at=now,
            )
        )
        await session.commit()


async def get_notification(db: SessionFactory, notification_id: str) -> NotificationView:
    n = parse_id(notification_id)
    public = format_notification_id(n)
    async with db() as session:
        row = await session.get(Notification, n)
        if row is None:
            raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
        recipients = (
            await session.execute(
                select(NotificationRecipient, MerchantUser)
                .join(MerchantUser, MerchantUser.id == NotificationRecipient.merchant_user_id)
                .where(NotificationRecipient.notification_id == n)
                .order_by(NotificationRecipient.id)
            )
        ).all()
        answers = (
            await session.scalars(
                select(NotificationAnswer)
                .where(NotificationAnswer.notification_id == n)
                .order_by(NotificationAnswer.created_at, NotificationAnswer.id)
            )
        ).all()
        delivery = await session.scalar(
            select(Delivery)
            .where(
                Delivery.notification_id == n,
                Delivery.recipient_kind == RecipientKind.customer,
                Delivery.kind == DeliveryKind.answer,
            )
            .order_by(Delivery.id.desc())
            .limit(1)
        )
    return _view(row, recipients, answers, delivery)


def _view(
    row: Notification,
    recipients: Any,
    answers: Any,
    delivery: Delivery | None,
) -> NotificationView:
    return NotificationView(
        notification_id=format_notification_id(row.id),
        type=row.type,
        status=row.status,
        merchant_id=row.merchant_id,
        conversation_id=row.conversation_id,
        context={k: v for k, v in row.context.items()},
        answer_schema=row.answer_schema,
        allow_multiple_answers=row.allow_multiple_answers,
        recipients=[
            RecipientView(
                merchant_user_id=user.id,
                name=user.name,
                user_type=user.user_type,
                reason=rec.reason,
            )
            for rec, user in recipients
        ],
        answers=[
            AnswerView(
                answered_by=a.answered_by,
                source=a.source,
                accepted=a.accepted,
                # Operators see the whole answer, resolution notes included (they are internal);
                # only the customer-facing field ever leaves for a customer or an LLM.
                answer=a.answer_text,
                reason_code=a.reason_code,
                reason=a.reason,
                created_at=a.created_at,
            )
            for a in answers
        ],
        delivery=DeliveryView(
            method=row.delivery_method or (delivery.method if delivery else None),
            channel=delivery.channel if delivery else None,
            status=delivery.status if delivery else None,
            provider_message_id=delivery.provider_message_id if delivery else None,
            failure_reason=row.failure_reason,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        answered_at=row.answered_at,
        closed_at=row.closed_at,
        delivered_at=row.delivered_at,
        close_reason=row.close_reason,
    )


async def list_notifications(
    db: SessionFactory,
    *,
    status: str | None = None,
    type: str | None = None,
    merchant_id: int | None = None,
    limit: int = 100,
) -> list[NotificationView]:
    if status is not None and status not in NotificationStatus.__members__:
        raise NotificationError(RefusalCode.invalid_input, f"unknown status {status!r}")
    if type is not None and type not in NotificationType.__members__:
        raise NotificationError(RefusalCode.unknown_type, f"unknown notification type {type!r}")
    query = select(Notification).order_by(Notification.id.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(Notification.status == status)
    if type:
        query = query.where(Notification.type == type)
    if merchant_id is not None:
        query = query.where(Notification.merchant_id == merchant_id)
    async with db() as session:
        rows = (await session.scalars(query)).all()
        ids = [r.id for r in rows]
        answers = (
            (
                await session.scalars(
                    select(NotificationAnswer)
                    .where(NotificationAnswer.notification_id.in_(ids))
                    .order_by(NotificationAnswer.created_at, NotificationAnswer.id)
                )
            ).all()
            if ids
            else []
        )
    by_id: dict[int, list[NotificationAnswer]] = {}
    for a in answers:
        by_id.setdefault(a.notification_id, []).append(a)
    return [_view(r, [], by_id.get(r.id, []), None) for r in rows]


async def notification_timeline(db: SessionFactory, notification_id: str) -> list[TimelineEntry]:
    """Requested, sent to whom, reminders, answers accepted and refused, delivery, closure."""
    n = parse_id(notification_id)
    view = await get_notification(db, notification_id)
    async with db() as session:
        deliveries = (
            await session.scalars(
                select(Delivery).where(Delivery.notification_id == n).order_by(Delivery.id)
            )
        ).all()
        names = {
            u.id: u.name
            for u in (
                await session.scalars(
                    select(MerchantUser).where(MerchantUser.merchant_id == view.merchant_id)
                )
            ).all()
        }
    entries = [TimelineEntry(at=view.created_at, event="requested", detail=view.type)]
    for d in deliveries:
        who = names.get(d.merchant_user_id or -1, "customer")
        outcome = d.status if not d.error_code else f"{d.status} ({d.error_code})"
        entries.append(
            TimelineEntry(
                at=d.created_at,
                event=f"sent {d.kind}",
                detail=f"to {who} by {d.method} via {d.channel}: {outcome}",
            )
        )
    for a in view.answers:
        who = names.get(a.answered_by or -1, f"user {a.answered_by}")
        entries.append(
            TimelineEntry(
                at=a.created_at,
                event="answer accepted" if a.accepted else "answer refused",
                detail=f"by {who} via {a.source}"
                + ("" if a.accepted else f": {a.reason_code}: {a.reason}"),
            )
        )
    if view.delivered_at:
        entries.append(
            TimelineEntry(
                at=view.delivered_at,
                event="delivered",
                detail=f"by {view.delivery.method}",
            )
        )
    if view.closed_at:
        entries.append(
            TimelineEntry(at=view.closed_at, event=view.status, detail=view.close_reason or "")
        )
    entries.sort(key=lambda e: e.at)
    return entries
