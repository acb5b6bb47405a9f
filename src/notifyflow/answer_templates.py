"""Answer templates (canned answers, DESIGN §10): a merchant's stored answers, each for one
notification type, named by a short code.

- Stored through ``/v1/merchants/{id}/answer-templates`` (or ``notifyflow answer-templates``):
  the answer is validated against the type's schema when stored.
- Used by an answer that is ``{"template": "<code>"}`` (answer route, CLI,
  ``AnswerNotificationTool``) or a WhatsApp reply ``#<code>``: :func:`resolve` turns the code
  into the template's answer for the notification's merchant and type, and validates it again,
  against the notification's own schema, at use. What is submitted, stored and delivered is
  the resolved answer; ``notification_answer.template_code`` says which template it was.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, cast, delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import AnswerTemplate, Merchant, MerchantUser, Notification
from notifyflow.db.types import utcnow
from notifyflow.models.answer_templates import (
    MAX_ANSWER_CHARS,
    MAX_QUICK_CODES,
    AnswerTemplateCreate,
    AnswerTemplateReplace,
    AnswerTemplateView,
)
from notifyflow.models.answers import validate_answer
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import INT32_MAX, format_notification_id
from notifyflow.models.notification import NOTIFICATION_CONFIG, NotificationType
from notifyflow.models.pages import (
    DEFAULT_PAGE_SIZE,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    int_key,
)

log = logging.getLogger(__name__)

# Codes named in an unknown-template refusal (the admin reads them on a phone).
MAX_LISTED = 10


# ---- refusals -------------------------------------------------------------------------------


def _merchant_missing(merchant_id: int) -> NotificationError:
    # Word for word what every merchant route answers (notifyflow.api.scope).
    return NotificationError(
        RefusalCode.not_found,
        f"merchant {merchant_id} does not exist",
        details={"merchant_id": merchant_id},
    )


def _template_missing(code: str) -> NotificationError:
    return NotificationError(
        RefusalCode.not_found,
        f"answer template {code!r} does not exist",
        details={"code": code},
    )


def _unfit(type: str, err: NotificationError) -> NotificationError:
    details = [
        {"in": "body", "path": "/answer" + str(d.get("path", "/")).rstrip("/"), **_rest(d)}
        for d in (err.details if isinstance(err.details, list) else [])
    ] or [{"in": "body", "path": "/answer", "message": err.message}]
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:3])
    return NotificationError(
        err.code, f"answer does not fit the {type} answer schema: {summary}", details=details
    )


def _rest(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k not in ("in", "path")}


def check_answer(type: NotificationType, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as the type's schema takes it, or the refusal naming ``/answer/…``."""
    cfg = NOTIFICATION_CONFIG[type]
    if len(json.dumps(answer, ensure_ascii=False)) > MAX_ANSWER_CHARS:
        message = f"must be at most {MAX_ANSWER_CHARS} characters as JSON"
        raise NotificationError(
            RefusalCode.invalid_input,
            f"answer: {message}",
            details=[{"in": "body", "path": "/answer", "message": message}],
        )
    try:
        return validate_answer(answer, cfg.answer_json_schema(), cfg.answered_fields)
    except NotificationError as err:
        raise _unfit(type.value, err) from None


# ---- the routes' operations -----------------------------------------------------------------


async def _merchant(session: AsyncSession, merchant_id: int) -> None:
    if not 1 <= merchant_id <= INT32_MAX or await session.get(Merchant, merchant_id) is None:
        raise _merchant_missing(merchant_id)


async def _template(session: AsyncSession, merchant_id: int, code: str) -> AnswerTemplate:
    row = await session.scalar(
        select(AnswerTemplate).where(
            AnswerTemplate.merchant_id == merchant_id, AnswerTemplate.code == code
        )
    )
    if row is None:
        raise _template_missing(code)
    return row


async def create(
    db: SessionFactory, merchant_id: int, body: AnswerTemplateCreate
) -> AnswerTemplateView:
    """Store a new template; a code the merchant already has is 409 (replace it with PUT)."""
    answer = check_answer(body.type, body.answer)
    conflict = NotificationError(
        RefusalCode.conflict,
        f"answer template {body.code!r} already exists; replace it with PUT "
        f"/v1/merchants/{merchant_id}/answer-templates/{body.code}",
        details=[{"in": "body", "path": "/code", "message": "already exists"}],
    )
    async with db() as session:
        await _merchant(session, merchant_id)
        row = AnswerTemplate(
            merchant_id=merchant_id,
            code=body.code,
            type=body.type.value,
            answer=answer,
            use_count=0,
            created_at=utcnow(),
        )
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise conflict from None
        return AnswerTemplateView.model_validate(row)


async def replace(
    db: SessionFactory, merchant_id: int, code: str, body: AnswerTemplateReplace
) -> AnswerTemplateView:
    """A code's new answer (and type); its use count stays."""
    answer = check_answer(body.type, body.answer)
    async with db() as session:
        await _merchant(session, merchant_id)
        row = await _template(session, merchant_id, code)
        row.type = body.type.value
        row.answer = answer
        await session.commit()
        return AnswerTemplateView.model_validate(row)


async def list_page(
    db: SessionFactory,
    merchant_id: int,
    type: NotificationType | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[AnswerTemplateView]:
    """The merchant's templates, oldest first, optionally of one type; a page of them."""
    check_limit(limit)
    after = int_key(decode_cursor("answer-templates", cursor))
    async with db() as session:
        await _merchant(session, merchant_id)
        query = select(AnswerTemplate).where(AnswerTemplate.merchant_id == merchant_id)
        if type is not None:
            query = query.where(AnswerTemplate.type == type.value)
        if after is not None:
            query = query.where(AnswerTemplate.id > after[0])
        rows = (await session.scalars(query.order_by(AnswerTemplate.id).limit(limit + 1))).all()
    items = [AnswerTemplateView.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor("answer-templates", [items[-1].id]) if more and items else None
    return Page[AnswerTemplateView](items=items, next_cursor=next_cursor)


async def remove(db: SessionFactory, merchant_id: int, code: str) -> None:
    """Delete a template. Answers that used it keep its code and the answer it gave."""
    async with db() as session:
        await _merchant(session, merchant_id)
        row = await _template(session, merchant_id, code)
        await session.execute(delete(AnswerTemplate).where(AnswerTemplate.id == row.id))
        await session.commit()


# ---- use ------------------------------------------------------------------------------------


def quick_codes(merchant_id: int, type: str, limit: int = MAX_QUICK_CODES) -> Select[Any]:
    """The merchant's codes for a type, most used first: one range scan of
    ``ix_answer_template_merchant_type``."""
    return (
        select(AnswerTemplate.code)
        .where(AnswerTemplate.merchant_id == merchant_id, AnswerTemplate.type == type)
        .order_by(AnswerTemplate.use_count.desc(), AnswerTemplate.code)
        .limit(limit)
    )


def quick_codes_column() -> Any:
    """The same codes as one column of a statement that selects a Notification: a correlated
    scalar subquery, ``"<uses>:<code>,…"`` (NULL without templates), so a load of the
    notification carries them without a statement of its own (:func:`parse_quick_codes`)."""
    top = (
        select(
            (cast(AnswerTemplate.use_count, String(12)) + ":" + AnswerTemplate.code).label("entry")
        )
        .where(
            AnswerTemplate.merchant_id == Notification.merchant_id,
            AnswerTemplate.type == Notification.type,
        )
        .order_by(AnswerTemplate.use_count.desc(), AnswerTemplate.code)
        .limit(MAX_QUICK_CODES)
        .correlate(Notification)
        .subquery()
    )
    return (
        select(func.aggregate_strings(top.c.entry, ","))
        .correlate(Notification)
        .scalar_subquery()
        .label("quick_codes")
    )


def parse_quick_codes(value: str | None) -> list[str]:
    """:func:`quick_codes_column`'s value as codes, most used first (the aggregate keeps no
    order of its own, so the uses travel with each code)."""
    entries = []
    for entry in (value or "").split(","):
        uses, _, code = entry.partition(":")
        if code and uses.isdigit():
            entries.append((-int(uses), code))
    return [code for _, code in sorted(entries)]


@dataclass(frozen=True)
class Resolved:
    code: str
    merchant_id: int
    answer: dict[str, Any]

    @property
    def answer_json(self) -> str:
        return json.dumps(self.answer, ensure_ascii=False)


def unknown_template(code: str, type: str, available: list[str]) -> NotificationError:
    listed = ", ".join(f"#{c}" for c in available)
    message = f"there is no answer template {code!r} for {type}; " + (
        f"the merchant's templates for it: {listed}" if available else "the merchant has none"
    )
    return NotificationError(
        RefusalCode.unknown_template,
        message,
        details=[
            {
                "in": "body",
                "path": "/answer/template",
                "message": "unknown answer template",
                "template": code,
                "available": available,
            }
        ],
    )


async def resolve(db: SessionFactory, n: int, code: str, answered_by: int) -> Resolved | None:
    """The template ``code`` of notification ``n``'s merchant and type, validated against
    the notification's schema now. None when the notification is missing or ``answered_by``
    is not one of its merchant's users: the reference then goes on unresolved and is refused
    for that reason, naming nothing of the merchant's templates."""
    if not 1 <= answered_by <= INT32_MAX:
        return None
    user_merchant = (
        select(MerchantUser.merchant_id).where(MerchantUser.id == answered_by).scalar_subquery()
    )
    async with db() as session:
        row = (
            await session.execute(
                select(
                    Notification.merchant_id,
                    Notification.type,
                    Notification.answer_schema,
                    user_merchant.label("user_merchant"),
                ).where(Notification.id == n)
            )
        ).one_or_none()
    if row is None or row.user_merchant != row.merchant_id:
        return None
    return await resolve_for(
        db,
        row.merchant_id,
        row.type,
        code,
        row.answer_schema,
        what=f"{format_notification_id(n)}'s answer schema",
    )


async def resolve_for(
    db: SessionFactory,
    merchant_id: int,
    type: str,
    code: str,
    schema: dict[str, Any],
    *,
    what: str,
) -> Resolved:
    """The merchant's template ``code`` for ``type``, validated against ``schema`` (the
    notification's) now, or the refusal: unknown (naming the codes there are) or no longer
    fitting."""
    async with db() as session:
        template = await session.scalar(
            select(AnswerTemplate).where(
                AnswerTemplate.merchant_id == merchant_id, AnswerTemplate.code == code
            )
        )
        if template is None or template.type != type:
            available = list(
                (await session.scalars(quick_codes(merchant_id, type, MAX_LISTED))).all()
            )
            raise unknown_template(code, type, available)
    cfg = NOTIFICATION_CONFIG[NotificationType(type)]
    stored: Any = template.answer
    if not isinstance(stored, dict):
        raise NotificationError(
            RefusalCode.schema_mismatch,
            f"answer template {code!r} no longer fits {what}: its answer is not a JSON object",
            details=[{"path": "/", "message": "must be an object"}],
        )
    try:
        answer = validate_answer(dict(stored), schema, cfg.answered_fields)
    except NotificationError as err:
        # It fitted when stored: the schema or the stored answer changed since.
        raise NotificationError(
            err.code,
            f"answer template {code!r} no longer fits {what}: {err.message}",
            details=err.details,
        ) from None
    return Resolved(code, merchant_id, answer)


async def mark_used(db: SessionFactory, resolved: Resolved) -> None:
    """Count an accepted use (the quick answers list the most used first). Best effort: the
    answer is accepted already, and a lost count must not make its caller think otherwise."""
    try:
        async with db() as session:
            await session.execute(
                update(AnswerTemplate)
                .where(
                    AnswerTemplate.merchant_id == resolved.merchant_id,
                    AnswerTemplate.code == resolved.code,
                )
                .values(use_count=AnswerTemplate.use_count + 1, last_used_at=utcnow())
            )
            await session.commit()
    except SQLAlchemyError as exc:
        log.warning("answer template %r: use not counted: %s", resolved.code, exc)
