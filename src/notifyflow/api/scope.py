"""What a caller may touch (DESIGN §9), applied by the routes to the :class:`Caller` that
``AuthMiddleware`` put in the request scope.

A merchant key sees its own merchant only. Another merchant's merchant, conversation,
notification, document or user is refused with exactly the body a missing one gets (the same
error, built by the same wording), so a key cannot learn what exists outside its merchant.
Operator-only routes refuse a merchant key with 403 before they look anything up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import select

from notifyflow.api.auth import CALLER_SCOPE_KEY, Caller
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Conversation, MerchantUser, Notification
from notifyflow.models.errors import NotificationError, RefusalCode, parse_id
from notifyflow.models.ids import INT32_MAX, format_notification_id


def get_caller(request: Request) -> Caller:
    caller = request.scope.get(CALLER_SCOPE_KEY)
    if not isinstance(caller, Caller):
        # Never serve a route without knowing who asks: the middleware is part of create_app.
        raise RuntimeError("no caller in the request scope: AuthMiddleware is not installed")
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_operator(caller: CallerDep) -> Caller:
    if caller.scoped:
        raise HTTPException(
            403,
            "this route needs the operator token (NOTIFYFLOW_API_TOKEN); a merchant API key "
            "cannot use it",
        )
    return caller


OperatorOnly = Annotated[Caller, Depends(require_operator)]


# ---- the refusals a missing row gets, word for word --------------------------------------


def merchant_not_found(merchant_id: int) -> NotificationError:
    """As ``notifyflow.directory`` refuses a missing merchant."""
    return NotificationError(
        RefusalCode.not_found,
        f"merchant {merchant_id} does not exist",
        details={"merchant_id": merchant_id},
    )


def conversation_not_found(conversation_id: int) -> NotificationError:
    """As ``notifyflow.directory`` refuses a missing conversation."""
    return NotificationError(
        RefusalCode.not_found,
        f"conversation {conversation_id} does not exist",
        details={"conversation_id": conversation_id},
    )


def request_conversation_not_found(conversation_id: int) -> NotificationError:
    """As ``notifyflow.starter`` refuses a request for a missing conversation."""
    return NotificationError(RefusalCode.not_found, f"conversation {conversation_id} not found")


def notification_not_found(public: str) -> NotificationError:
    """As ``notifyflow.starter`` refuses a missing notification."""
    return NotificationError(RefusalCode.not_found, f"notification {public} not found")


# ---- checks ---------------------------------------------------------------------------------


def check_merchant(caller: Caller, merchant_id: int) -> None:
    if caller.scoped and caller.merchant_id != merchant_id:
        raise merchant_not_found(merchant_id)


async def _conversation_merchant(db: SessionFactory, conversation_id: int) -> int | None:
    """The conversation's merchant, or None when there is no such customer conversation."""
    if not 1 <= conversation_id <= INT32_MAX:
        return None
    async with db() as session:
        merchant_id: int | None = await session.scalar(
            select(Conversation.merchant_id).where(Conversation.id == conversation_id)
        )
    return merchant_id


async def check_conversation(db: SessionFactory, caller: Caller, conversation_id: int) -> None:
    """The directory's routes (messages): another merchant's conversation does not exist."""
    if caller.scoped and await _conversation_merchant(db, conversation_id) != caller.merchant_id:
        raise conversation_not_found(conversation_id)


async def check_request_conversation(
    db: SessionFactory, caller: Caller, conversation_id: int
) -> None:
    """``POST /v1/notifications``: the starter's wording, and like the starter an admin's own
    conversation (``merchant_user_id`` set) is not one a notification can be opened for."""
    if not caller.scoped:
        return
    row = None
    if 1 <= conversation_id <= INT32_MAX:
        async with db() as session:
            row = (
                await session.execute(
                    select(Conversation.merchant_id, Conversation.merchant_user_id).where(
                        Conversation.id == conversation_id
                    )
                )
            ).one_or_none()
    if row is None or row.merchant_user_id is not None or row.merchant_id != caller.merchant_id:
        raise request_conversation_not_found(conversation_id)


async def check_notification(db: SessionFactory, caller: Caller, public: str) -> None:
    """Another merchant's notification does not exist (``public`` is already canonical)."""
    if not caller.scoped:
        return
    n = parse_id(public)
    async with db() as session:
        merchant_id = await session.scalar(
            select(Notification.merchant_id).where(Notification.id == n)
        )
    if merchant_id != caller.merchant_id:
        raise notification_not_found(format_notification_id(n))


async def check_answerer(db: SessionFactory, caller: Caller, answered_by: int) -> None:
    """A merchant key answers only as a user of its own merchant (403, whether the user is
    another merchant's or does not exist at all)."""
    if not caller.scoped:
        return
    async with db() as session:
        merchant_id = await session.scalar(
            select(MerchantUser.merchant_id).where(MerchantUser.id == answered_by)
        )
    if merchant_id != caller.merchant_id:
        raise NotificationError(
            RefusalCode.not_allowed,
            f"answered_by {answered_by} is not a user of this API key's merchant",
            details=[
                {
                    "in": "body",
                    "path": "/answered_by",
                    "message": "must be a user of this API key's merchant",
                }
            ],
        )
