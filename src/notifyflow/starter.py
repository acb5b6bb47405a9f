"""The one client-side API: request, answer, close (and get, list, timeline, re-exported from
:mod:`notifyflow.read_model`).

The CLI, the HTTP API and the LLM tools are thin layers over these functions. User mistakes
raise ``NotificationError`` (with its HTTP status) and change nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from notifyflow import answer_templates
from notifyflow.config import Settings, get_settings
from notifyflow.db import answer_history
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Conversation,
    MerchantUser,
    Notification,
)
from notifyflow.db.types import utcnow
from notifyflow.faults import fault_point
from notifyflow.intake import check_request, record_request
from notifyflow.launch import (
    START_WAIT,
    admin_ids,
    ensure_started,
    start_options,
    workflow_input,
)
from notifyflow.models.answer_templates import template_reference
from notifyflow.models.answers import answer_text, parse_answer, validate_answer
from notifyflow.models.errors import NotificationError, RefusalCode, parse_id, refusal_for
from notifyflow.models.ids import (
    format_notification_id,
    workflow_id_for,
)
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    NotificationStatus,
)
from notifyflow.models.text import unstorable
from notifyflow.models.views import (
    NotificationView,
)
from notifyflow.models.workflow_io import (
    AnswerAccepted,
    AnswerSource,
    AnswerSubmission,
    CloseRequest,
    CustomerMessage,
    CustomerMessageAccepted,
    Priority,
)
from notifyflow.read_model import (
    get_notification,
    list_notifications,
    notification_timeline,
    notification_view,
)
from notifyflow.webhooks import events as webhook_events
from notifyflow.workflows.notification import NotificationWorkflow

__all__ = [
    "add_customer_message",
    "answer_new_notification",
    "answer_notification",
    "check_request",
    "close_notification",
    "ensure_started",
    "get_notification",
    "list_notifications",
    "notification_timeline",
    "record_refused_answer",
    "request_notification",
]

log = logging.getLogger(__name__)

CLOSE_WAIT = timedelta(seconds=20)
# The answer route returns within 10 s (DESIGN §7): the update gets this long to be accepted.
ANSWER_WAIT = timedelta(seconds=8)
# The first pause before an update the server refused for now is tried again (doubling to 1 s).
RESUBMIT_PAUSE = 0.05


async def request_notification(
    client: Client,
    db: SessionFactory,
    *,
    type: str,
    conversation_id: int,
    context: dict[str, Any],
    idempotency_key: str | None = None,
    settings: Settings | None = None,
    priority: Priority | str = Priority.normal,
) -> NotificationView:
    """Validate, record and start a notification. Raises NotificationError on bad input.

    Everything is checked before anything durable happens; the same ``idempotency_key``
    returns the same notification (and its workflow is started once).
    """
    settings = settings or get_settings()
    kind, context = check_request(type, context)
    try:
        level = Priority(priority)
    except ValueError:
        raise NotificationError(
            RefusalCode.invalid_input,
            f"priority must be normal or urgent, not {priority!r}",
            details=[{"in": "body", "path": "/priority", "message": "normal or urgent"}],
        ) from None
    notification, admins, created = await record_request(
        db, kind, context, conversation_id, idempotency_key, priority=level, settings=settings
    )
    fault_point("exit_after_record")
    await _start_soon(client, notification, admins, settings)
    if created:
        # Just written, so nothing else is attached yet: no need to read it back.
        return notification_view(notification, [], [], None)
    return await get_notification(db, format_notification_id(notification.id))


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
    text = answer_text(answer)
    code = template_reference(answer)
    resolved: answer_templates.Resolved | None = None
    if code is not None:
        resolved = await answer_templates.resolve_for(
            db,
            conversation.merchant_id,
            kind.value,
            code,
            NOTIFICATION_CONFIG[kind].answer_json_schema(),
            what=f"the {kind.value} answer schema",
        )
        text = resolved.answer_json
    # Checked before anything is written, so a bad answer leaves no notification behind.
    validate_answer(
        parse_answer(text),
        NOTIFICATION_CONFIG[kind].answer_json_schema(),
        NOTIFICATION_CONFIG[kind].answered_fields,
    )
    notification, admins, _ = await record_request(
        db, kind, context, conversation_id, idempotency_key
    )
    input = workflow_input(notification, admins, settings).model_copy(
        update={"answered_directly": True, "allowed_answerers": [answered_by]}
    )
    public = format_notification_id(notification.id)
    start = WithStartWorkflowOperation(
        NotificationWorkflow.run,
        input,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        **start_options(
            notification,
            input,
            settings,
            static_summary=f"{public} · {notification.type} · answered directly",
        ),
    )
    submission = AnswerSubmission(
        notification_id=public,
        answered_by=answered_by,
        answer_json=text,
        source=source,
        template=resolved.code if resolved else None,
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
    except (TimeoutError, RPCError, RPCTimeoutOrCancelledError) as exc:
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
    if resolved is not None:
        await answer_templates.mark_used(db, resolved)
    return accepted


async def _start_soon(
    client: Client, notification: Notification, admins: list[int], settings: Settings
) -> None:
    """Start the just-recorded notification's workflow within START_WAIT. A failure here is
    not the caller's: the row is durable, and the sweeper starts its workflow later."""
    public = format_notification_id(notification.id)
    try:
        await asyncio.wait_for(
            ensure_started(client, notification, admins, settings),
            START_WAIT.total_seconds(),
        )
    except (TimeoutError, RPCError) as exc:
        if isinstance(exc, RPCError) and exc.status not in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
        ):
            # Not Temporal being away: a refusal an operator must fix (e.g. a search
            # attribute the namespace lacks). The row stays for the sweeper.
            log.error("%s: Temporal refused to start its workflow: %s", public, exc.message)
            return
        log.warning(
            "%s: recorded, but its workflow could not be started now (%s); the sweeper will "
            "start it once Temporal answers",
            public,
            exc.__class__.__name__,
        )


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
    text = answer_text(answer)
    # {"template": "<code>"}: the merchant's canned answer, resolved and validated now; the
    # workflow gets (and validates again) the answer itself, with the code beside it.
    code = template_reference(answer)
    resolved: answer_templates.Resolved | None = None
    if code is not None:
        try:
            resolved = await answer_templates.resolve(db, n, code, answered_by)
        except NotificationError as refusal:
            await _record_refusal(db, n, answered_by, source, text, refusal, template=code)
            raise
        if resolved is not None:
            text = resolved.answer_json
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id_for(n))
    submission = AnswerSubmission(
        notification_id=public,
        answered_by=answered_by,
        answer_json=text,
        source=source,
        template=resolved.code if resolved else None,
    )
    try:
        try:
            accepted = await _submit(handle, submission)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # No workflow under that id: a recorded notification whose start failed is
            # started now (the answer then goes to it); anything else is refused truthfully.
            await _start_recorded_or_refuse(client, db, n, settings or get_settings())
            accepted = await _submit(handle, submission)
    except WorkflowUpdateFailedError as exc:
        error = _refusal_from(exc.cause)
    except NotificationError as exc:
        error = exc
    else:
        if resolved is not None:
            await answer_templates.mark_used(db, resolved)
        return accepted
    if error.code is not RefusalCode.not_ready:
        await _record_refusal(db, n, answered_by, source, text, error, template=code)
    raise error


async def _submit(handle: WorkflowHandle[Any, Any], submission: AnswerSubmission) -> AnswerAccepted:
    """The update, tried again within ANSWER_WAIT while the server says "not now": a burst of
    answers beyond its in-flight updates per workflow (10) is refused with RESOURCE_EXHAUSTED,
    and an update the server dropped before accepting it (its workflow task was lost) comes
    back UNAVAILABLE. Trying again is safe: the same answer from the same person is the one
    already taken, and another one is refused as already answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_WAIT.total_seconds()
    pause = RESUBMIT_PAUSE
    while True:
        left = deadline - loop.time()
        try:
            if left <= 0:
                raise TimeoutError
            accepted: AnswerAccepted = await asyncio.wait_for(
                handle.execute_update(
                    "submit_answer",
                    submission,
                    result_type=AnswerAccepted,
                    rpc_timeout=timedelta(seconds=left),
                ),
                left,
            )
            return accepted
        except (TimeoutError, RPCTimeoutOrCancelledError):
            # Ours (wait_for) or the SDK's (the update's RPC deadline passed under load): the
            # same "not now", not a failure of the answer.
            raise NotificationError(
                RefusalCode.not_ready,
                f"{submission.notification_id} did not take the answer within "
                f"{ANSWER_WAIT.total_seconds():.0f} s (its worker is busy or away); it may still "
                "take it: sending the same answer again is safe",
            ) from None
        except RPCError as exc:
            retryable = exc.status in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)
            if retryable and deadline - loop.time() > pause:
                log.info(
                    "%s: the update was refused for now (%s); again in %.2f s",
                    submission.notification_id,
                    exc.status.name,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            if exc.status in (
                RPCStatusCode.DEADLINE_EXCEEDED,
                RPCStatusCode.UNAVAILABLE,
                RPCStatusCode.RESOURCE_EXHAUSTED,
            ):
                raise NotificationError(
                    RefusalCode.not_ready,
                    f"the workflow service did not answer for {submission.notification_id}; "
                    "sending the same answer again is safe",
                ) from None
            raise


async def _start_recorded_or_refuse(
    client: Client, db: SessionFactory, n: int, settings: Settings
) -> None:
    """The notification has no workflow under its id. A ``requested`` row whose start failed
    gets its workflow now; otherwise raise the refusal that names the true state."""
    public = format_notification_id(n)
    async with db() as session:
        row = await session.get(Notification, n)
        admins = await admin_ids(session, row.merchant_id) if row is not None else []
    if row is None:
        raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
    # With no workflow, nothing but a requested row can take an answer.
    refusal = refusal_for(public, NotificationStatus(row.status))
    if refusal is not None:
        raise refusal
    if not await ensure_started(client, row, admins, settings):
        raise NotificationError(
            RefusalCode.closed,
            f"{public}'s workflow has already ended though its record says requested; "
            "an operator can close it",
        )
    log.warning("%s: its workflow had not started; started it for an answer", public)


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
        db, parse_id(notification_id), answered_by, source, answer_text(answer), error
    )


async def _record_refusal(
    db: SessionFactory,
    n: int,
    answered_by: int,
    source: AnswerSource,
    text: str,
    error: NotificationError,
    *,
    template: str | None = None,
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
        template_code=template,
    )


MAX_FOLLOW_UP_CHARS = 4_000


async def add_customer_message(
    client: Client,
    db: SessionFactory,
    notification_id: str,
    text: str,
    *,
    settings: Settings | None = None,
    message_id: str | None = None,
) -> CustomerMessageAccepted:
    """The customer wrote again about an open notification (DESIGN §8): the message joins the
    notification and is forwarded to its recipients. Refused once it is answered or closed."""
    n = parse_id(notification_id)
    public = format_notification_id(n)
    text = text.strip() if isinstance(text, str) else ""
    if not text or len(text) > MAX_FOLLOW_UP_CHARS or unstorable(text, "/text"):
        raise NotificationError(
            RefusalCode.invalid_input,
            f"text must be 1 to {MAX_FOLLOW_UP_CHARS} storable characters",
            details=[{"in": "body", "path": "/text", "message": "required, storable text"}],
        )
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id_for(n))
    message = CustomerMessage(notification_id=public, text=text)

    async def update() -> CustomerMessageAccepted:
        try:
            accepted: CustomerMessageAccepted = await asyncio.wait_for(
                handle.execute_update(
                    "add_customer_message",
                    message,
                    result_type=CustomerMessageAccepted,
                    rpc_timeout=ANSWER_WAIT,
                    # Temporal keeps one update per id: the same message_id again (a client
                    # retrying after a timeout) returns the first one's result.
                    id=f"customer-message:{message_id}" if message_id else None,
                ),
                ANSWER_WAIT.total_seconds(),
            )
        except (TimeoutError, RPCTimeoutOrCancelledError):
            raise NotificationError(
                RefusalCode.not_ready,
                f"{public} did not take the message in time"
                + ("; sending it again with the same message_id is safe" if message_id else ""),
            ) from None
        except RPCError as exc:
            if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE):
                raise NotificationError(
                    RefusalCode.not_ready, f"the workflow service did not answer for {public}"
                ) from None
            raise
        return accepted

    try:
        try:
            return await update()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            await _start_recorded_or_refuse(client, db, n, settings or get_settings())
            return await update()
    except WorkflowUpdateFailedError as exc:
        raise _refusal_from(exc.cause) from None


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
    refusal = refusal_for(public, NotificationStatus(view.status), closing=True)
    if refusal is not None:
        raise refusal
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
    refusal = refusal_for(public, NotificationStatus(view.status), closing=True)
    if refusal is not None and view.status != NotificationStatus.closed.value:
        # An answer won the race: the close was ignored.
        raise refusal
    return view


async def _close_without_workflow(
    client: Client, db: SessionFactory, n: int, request: CloseRequest, settings: Settings
) -> None:
    public = format_notification_id(n)
    async with db() as session:
        row = await session.get(Notification, n)
        if row is None:
            raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
        admins = await admin_ids(session, row.merchant_id)
    if await ensure_started(client, row, admins, settings, close=request):
        # Started with the close signal first: it ends closed without asking anyone, whenever
        # a worker runs it. The row is closed now, so the caller reads the truth at once.
        log.warning("%s: its workflow had never started; started it closed", public)
    else:
        log.warning("%s: its workflow had ended; closing the row directly", public)
    async with db() as session:
        now = utcnow()
        closed = await session.execute(
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
        if closed.rowcount:  # type: ignore[attr-defined]
            await webhook_events.enqueue(
                session,
                notification_id=n,
                merchant_id=row.merchant_id,
                event=webhook_events.EventType.closed,
            )
        await session.commit()
