"""Correcting a delivered answer (DESIGN §10), the client side: check, record the version,
start its CorrectionWorkflow.

Everything is checked before anything is written (who may answer, as for an answer; the
notification delivered; the answer valid for its schema), so a refusal changes nothing. The
version is then recorded in one transaction — version 1 (the first answer) written first when
this is the notification's first correction, the question's Document updated to the new
content — and the database's unique version number orders concurrent corrections. Only then is
``NOTIF_<n>:correction-<version>`` started; when Temporal is away the version stays ``pending``
and the workers' sweeper (:func:`sweep_corrections`) starts it once Temporal answers.

A retry of the same request sends nothing more: the same ``correction_id`` is the correction
already recorded, and without one, the same person sending the current version's answer again
is that version (both answer ``duplicate: true``)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from notifyflow.config import Settings, get_settings
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    AnswerVersion,
    Document,
    MerchantUser,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.launch import START_WAIT, start_once
from notifyflow.models.answers import answer_text, parse_answer, validate_answer
from notifyflow.models.corrections import (
    CorrectionAccepted,
    CorrectionInput,
    CorrectionStatus,
    correction_workflow_id,
)
from notifyflow.models.errors import NotificationError, RefusalCode, parse_id
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    NotificationStatus,
    NotificationType,
    headline,
)
from notifyflow.models.workflow_io import AnswerSource
from notifyflow.workflows.correction import CorrectionWorkflow

log = logging.getLogger(__name__)

# Two corrections racing for the same version number: the loser reads again and takes the next.
RECORD_ATTEMPTS = 5
# The sweeper gives up on starting a version after this long (a day of Temporal outage: the
# operator has been told by then).
SWEEP_WINDOW = timedelta(days=1)


async def correct_notification(
    client: Client,
    db: SessionFactory,
    notification_id: str,
    *,
    answered_by: int,
    answer: dict[str, Any] | str,
    source: AnswerSource = AnswerSource.api,
    correction_id: str | None = None,
    settings: Settings | None = None,
) -> CorrectionAccepted:
    """Correct the delivered answer of ``notification_id``: the new version is recorded (and
    the question's Document shows it) before this returns; the customer is told durably.
    Refusals raise NotificationError and change nothing."""
    settings = settings or get_settings()
    n = parse_id(notification_id)
    accepted, pending = await record_correction(
        db,
        n,
        answered_by=answered_by,
        answer=answer,
        source=source,
        correction_id=correction_id,
    )
    if pending:
        # Also for a duplicate still pending: its first request's start may have failed.
        await _start_soon(client, n, accepted.version, settings)
    return accepted


async def record_correction(
    db: SessionFactory,
    n: int,
    *,
    answered_by: int,
    answer: dict[str, Any] | str,
    source: AnswerSource = AnswerSource.api,
    correction_id: str | None = None,
) -> tuple[CorrectionAccepted, bool]:
    """Check and record; returns the reply and whether the version still has to be sent."""
    public = format_notification_id(n)
    text = answer_text(answer)
    for _ in range(RECORD_ATTEMPTS):
        async with db() as session:
            notification = await session.get(Notification, n)
            if notification is None:
                raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
            await check_may_answer(session, notification, answered_by)
            _check_delivered(notification)
            cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
            parsed = validate_answer(
                parse_answer(text), notification.answer_schema, cfg.answered_fields
            )
            versions = list(
                (
                    await session.scalars(
                        select(AnswerVersion)
                        .where(AnswerVersion.notification_id == n)
                        .order_by(AnswerVersion.version)
                    )
                ).all()
            )
            same = _same_correction(versions, answered_by, parsed, correction_id)
            if same is not None:
                return _accepted(public, same, duplicate=True), same.status == "pending"
            if not versions:
                first = await _first_version(session, notification, cfg.customer_field)
                session.add(first)
                versions.append(first)
            content = str(parsed.get(cfg.customer_field, "")).strip()
            row = AnswerVersion(
                notification_id=n,
                version=versions[-1].version + 1,
                document_id=notification.document_id,
                answered_by=answered_by,
                source=source.value,
                answer_text=json.dumps(parsed, ensure_ascii=False),
                content=content,
                correction_key=correction_id,
                status=CorrectionStatus.pending.value,
                created_at=utcnow(),
            )
            if notification.type == NotificationType.user_question_request:
                row.document_id = await _apply_to_document(session, notification, content)
            notification.updated_at = utcnow()
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                # A concurrent correction took this version (or this correction_id): read again.
                await session.rollback()
                continue
            log.info("%s: correction v%d recorded", public, row.version)
            return _accepted(public, row, duplicate=False), True
    raise NotificationError(
        RefusalCode.not_ready,
        f"{public} is being corrected by several requests at once; send the correction again",
    )


async def check_may_answer(
    session: AsyncSession, notification: Notification, answered_by: int
) -> None:
    """Who may answer (DESIGN §2), from the database since the notification's workflow has
    ended: an active user of its merchant who was one of its recipients, or any active admin of
    that merchant. The workflow's own wording, and checked first, as there: a stranger learns
    nothing about the notification's state or schema."""
    user = await session.get(MerchantUser, answered_by) if 1 <= answered_by < 2**31 else None
    allowed = (
        user is not None
        and user.merchant_id == notification.merchant_id
        and user.deactivated_at is None
        and (
            user.user_type == "admin"
            or await session.scalar(
                select(func.count(NotificationRecipient.id)).where(
                    NotificationRecipient.notification_id == notification.id,
                    NotificationRecipient.merchant_user_id == answered_by,
                )
            )
        )
    )
    if not allowed:
        raise NotificationError(
            RefusalCode.not_allowed,
            f"merchant user {answered_by} may not answer {format_notification_id(notification.id)}",
            details=[{"in": "body", "path": "/answered_by", "message": "may not answer"}],
        )


def _check_delivered(notification: Notification) -> None:
    status = notification.status
    if status != NotificationStatus.delivered.value:
        public = format_notification_id(notification.id)
        raise NotificationError(
            RefusalCode.not_delivered,
            f"{public} is {status}: only a delivered answer can be corrected",
            details={"notification_id": public, "status": status},
        )


def _same_correction(
    versions: list[AnswerVersion],
    answered_by: int,
    answer: dict[str, Any],
    correction_id: str | None,
) -> AnswerVersion | None:
    """The version this request repeats, if it repeats one."""
    if correction_id is not None:
        return next((v for v in versions if v.correction_key == correction_id), None)
    if not versions:
        return None
    latest = versions[-1]
    if latest.answered_by == answered_by and parse_answer(latest.answer_text) == answer:
        return latest
    return None


async def _first_version(
    session: AsyncSession, notification: Notification, customer_field: str
) -> AnswerVersion:
    """Version 1: the accepted first answer, as it was delivered (answered before corrections
    existed, or simply never corrected until now)."""
    first = await session.scalar(
        select(NotificationAnswer)
        .where(
            NotificationAnswer.notification_id == notification.id,
            NotificationAnswer.accepted.is_(True),
        )
        .order_by(NotificationAnswer.created_at, NotificationAnswer.id)
        .limit(1)
    )
    answer_text = first.answer_text if first is not None else "{}"
    try:
        content = str(parse_answer(answer_text).get(customer_field, "")).strip()
    except NotificationError:
        content = ""
    return AnswerVersion(
        notification_id=notification.id,
        version=1,
        document_id=notification.document_id,
        answered_by=first.answered_by if first is not None else notification.answered_by,
        source=first.source if first is not None else AnswerSource.api.value,
        answer_text=answer_text,
        content=content,
        status=CorrectionStatus.sent.value,
        delivery_method=notification.delivery_method,
        created_at=(first.created_at if first is not None else None)
        or notification.answered_at
        or notification.created_at,
        sent_at=notification.delivered_at,
    )


async def _apply_to_document(session: AsyncSession, notification: Notification, text: str) -> int:
    """The question's Document shows the latest version; one gone missing is written anew."""
    document = (
        await session.get(Document, notification.document_id)
        if notification.document_id is not None
        else None
    )
    if document is None:
        document = Document(
            merchant_id=notification.merchant_id,
            category="UserQuestion",
            title=headline(notification.type, notification.context),
        )
        session.add(document)
        await session.flush()
        notification.document_id = document.id
    document.content = text
    document.updated_at = utcnow()
    return document.id


def _accepted(public: str, row: AnswerVersion, *, duplicate: bool) -> CorrectionAccepted:
    return CorrectionAccepted(
        notification_id=public,
        version=row.version,
        status=CorrectionStatus(row.status),
        duplicate=duplicate,
    )


async def start_correction(client: Client, n: int, version: int, settings: Settings) -> bool:
    """Start the version's CorrectionWorkflow, or join it; False when it already ran."""
    public = format_notification_id(n)
    return await start_once(
        client,
        CorrectionWorkflow.run,
        CorrectionInput(notification_id=n, version=version),
        id=correction_workflow_id(n, version),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        rpc_timeout=START_WAIT,
        static_summary=f"{public} · correction v{version}",
        static_details=(
            f"Correction v{version} of **{public}**'s delivered answer: localized and sent to "
            "the customer by the 24-hour rule (free-form inside the window, the "
            "notification_correction template outside it), once, through the delivery ledger "
            f"(key {public}:correction-{version}:customer)."
        ),
    )


async def _start_soon(client: Client, n: int, version: int, settings: Settings) -> None:
    """A failed start is not the caller's: the version is recorded, the sweeper starts it."""
    try:
        await asyncio.wait_for(
            start_correction(client, n, version, settings), START_WAIT.total_seconds()
        )
    except (TimeoutError, RPCError) as exc:
        log.warning(
            "%s: correction v%d recorded, its workflow not started now (%s); the sweeper will",
            format_notification_id(n),
            version,
            exc.__class__.__name__,
        )


async def sweep_corrections(
    client: Client,
    db: SessionFactory,
    settings: Settings,
    *,
    grace: timedelta | None = None,
) -> int:
    """Start the workflow of every pending version older than ``grace`` (default:
    NOTIFYFLOW_SWEEP_GRACE_SECONDS; younger ones are left to the request that recorded them;
    idempotent: a running one is joined, one that ended is left alone); returns how many were
    started."""
    now = utcnow()
    grace = grace if grace is not None else settings.sweep_grace
    async with db() as session:
        rows = (
            await session.execute(
                select(AnswerVersion.notification_id, AnswerVersion.version)
                .where(
                    # A literal, not a parameter: what the partial index (migration 0015)
                    # is defined by, so a generic plan of a prepared statement can use it.
                    AnswerVersion.status == literal_column(f"'{CorrectionStatus.pending.value}'"),
                    AnswerVersion.created_at < now - grace,
                    AnswerVersion.created_at > now - SWEEP_WINDOW,
                )
                .order_by(AnswerVersion.id)
                .limit(200)
            )
        ).all()
    started = 0
    for notification_id, version in rows:
        if await start_correction(client, notification_id, version, settings):
            started += 1
    return started
