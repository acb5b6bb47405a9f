"""Directory routes: merchants, their users and documents, campaign templates, conversations
and messages. Thin: validation lives in the input models, rules in ``notifyflow.directory``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from notifyflow import directory
from notifyflow.api.deps import DB
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import (
    CallerDep,
    OperatorOnly,
    check_conversation,
    check_merchant,
)
from notifyflow.models.directory import (
    CampaignTemplateBody,
    CampaignTemplateView,
    ConversationCreate,
    ConversationView,
    DocumentCreate,
    DocumentView,
    MerchantCreate,
    MerchantUserCreate,
    MerchantUserView,
    MerchantView,
    MessageCreate,
    MessageView,
)
from notifyflow.models.notification import Campaign

router = APIRouter(prefix="/v1")

_E: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope, "description": "A merchant key on an operator-only route"},
    404: {"model": ErrorEnvelope, "description": "Unknown merchant or conversation"},
    409: {"model": ErrorEnvelope, "description": "Duplicate"},
    422: {"model": ErrorEnvelope, "description": "Invalid input; failing paths in details"},
}
# Routes with a JSON body: one that is not even text (not UTF-8) is refused before validation.
_E_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Unreadable body (not UTF-8)"},
    **_E,
}


@router.post("/merchants", status_code=201, tags=["merchants"], responses=_E_BODY)
async def create_merchant(body: MerchantCreate, db: DB, _operator: OperatorOnly) -> MerchantView:
    """Create a merchant with its WhatsApp sender, default language and time zone. Operator
    token only."""
    return await directory.create_merchant(db, body)


@router.post(
    "/merchants/{merchant_id}/users", status_code=201, tags=["merchants"], responses=_E_BODY
)
async def add_merchant_user(
    merchant_id: int, body: MerchantUserCreate, db: DB, caller: CallerDep
) -> MerchantUserView:
    """Add a merchant user (admin, sales, returns, …); a phone is used once per merchant."""
    check_merchant(caller, merchant_id)
    return await directory.add_merchant_user(db, merchant_id, body)


@router.post(
    "/merchants/{merchant_id}/documents", status_code=201, tags=["documents"], responses=_E_BODY
)
async def add_document(
    merchant_id: int, body: DocumentCreate, db: DB, caller: CallerDep
) -> DocumentView:
    """Add a document: a UserQuestion answer, a SupportClassification entry (title = user type,
    content = what it handles), …"""
    check_merchant(caller, merchant_id)
    return await directory.add_document(db, merchant_id, body)


@router.get("/merchants/{merchant_id}/documents", tags=["documents"], responses=_E)
async def list_documents(
    merchant_id: int,
    db: DB,
    caller: CallerDep,
    category: Annotated[str | None, Query(max_length=64, examples=["UserQuestion"])] = None,
) -> list[DocumentView]:
    """A merchant's documents, oldest first, optionally of one category."""
    check_merchant(caller, merchant_id)
    return await directory.list_documents(db, merchant_id, category)


@router.put("/campaigns/{campaign}/templates/{language}", tags=["campaigns"], responses=_E_BODY)
async def put_campaign_template(
    campaign: Campaign,
    language: str,
    body: CampaignTemplateBody,
    db: DB,
    _operator: OperatorOnly,
) -> CampaignTemplateView:
    """Set the WhatsApp template (Content SID and body with ``{{1}}`` slots) a campaign uses in
    ``language`` (``en``, ``es``, ``pt-BR``) — the product default, or a merchant's own with
    ``merchant_id``. Creates or replaces. Operator token only."""
    return await directory.put_campaign_template(db, campaign, language, body)


@router.post("/conversations", status_code=201, tags=["conversations"], responses=_E_BODY)
async def create_conversation(
    body: ConversationCreate, db: DB, caller: CallerDep
) -> ConversationView:
    """Open a conversation with a customer on WhatsApp (``customer_phone``) or Instagram
    (``instagram_user_id``); the language defaults to the merchant's."""
    check_merchant(caller, body.merchant_id)
    return await directory.create_conversation(db, body)


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=201,
    tags=["conversations"],
    responses=_E_BODY,
)
async def add_message(
    conversation_id: int, body: MessageCreate, db: DB, caller: CallerDep
) -> MessageView:
    """Record a message; a ``user`` message refreshes the 24-hour window."""
    await check_conversation(db, caller, conversation_id)
    return await directory.add_message(db, conversation_id, body)


@router.get("/conversations/{conversation_id}/messages", tags=["conversations"], responses=_E)
async def list_messages(
    conversation_id: int,
    db: DB,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=directory.MAX_MESSAGES)] = directory.MAX_MESSAGES,
) -> list[MessageView]:
    """The latest messages, oldest first, template sends included
    (``whatsapp_payload.type == "template"``)."""
    await check_conversation(db, caller, conversation_id)
    return await directory.list_messages(db, conversation_id, limit=limit)
