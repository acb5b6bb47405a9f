"""Directory routes: merchants, their users and documents, campaign templates, conversations
and messages. Thin: validation lives in the input models, rules in ``notifyflow.directory``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

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
    ConversationUpdate,
    ConversationView,
    DocumentCreate,
    DocumentUpdate,
    DocumentView,
    MerchantCreate,
    MerchantUpdate,
    MerchantUserCreate,
    MerchantUserUpdate,
    MerchantUserView,
    MerchantView,
    MessageCreate,
    MessageView,
)
from notifyflow.models.ids import INT32_MAX
from notifyflow.models.notification import Campaign
from notifyflow.models.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page

router = APIRouter(prefix="/v1")

# Every list route: ?limit= (at most MAX_PAGE_SIZE) and ?cursor= (the previous page's
# next_cursor); the body is {items, next_cursor}.
Limit = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}"),
]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="The next_cursor of the previous page; absent for the first"),
]

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
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> Page[DocumentView]:
    """A merchant's documents, oldest first, optionally of one category: a page of them."""
    check_merchant(caller, merchant_id)
    return await directory.list_documents(db, merchant_id, category, limit=limit, cursor=cursor)


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
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> Page[MessageView]:
    """The latest messages, oldest first, template sends included
    (``whatsapp_payload.type == "template"``); ``next_cursor`` pages toward older ones."""
    await check_conversation(db, caller, conversation_id)
    return await directory.list_messages(db, conversation_id, limit=limit, cursor=cursor)


# ---- maintenance: read, change, delete (issue 18) ------------------------------------------

_E_PATCH = _E_BODY


@router.get("/merchants", tags=["merchants"], responses=_E)
async def list_merchants(
    db: DB, caller: CallerDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None
) -> Page[MerchantView]:
    """Merchants by id. A merchant key sees its own merchant only."""
    only = caller.merchant_id if caller.scoped else None
    return await directory.list_merchants(db, only=only, limit=limit, cursor=cursor)


@router.get("/merchants/{merchant_id}", tags=["merchants"], responses=_E)
async def get_merchant(merchant_id: int, db: DB, caller: CallerDep) -> MerchantView:
    """A merchant (``deactivated_at`` set once it was deleted)."""
    check_merchant(caller, merchant_id)
    return await directory.get_merchant(db, merchant_id)


@router.patch("/merchants/{merchant_id}", tags=["merchants"], responses=_E_PATCH)
async def update_merchant(
    merchant_id: int, body: MerchantUpdate, db: DB, caller: CallerDep
) -> MerchantView:
    """Change the fields given (name, sender, language, time zone, Instagram page, country)."""
    check_merchant(caller, merchant_id)
    return await directory.update_merchant(db, merchant_id, body)


@router.delete(
    "/merchants/{merchant_id}",
    tags=["merchants"],
    responses=_E,
    status_code=204,
    response_class=Response,
)
async def deactivate_merchant(merchant_id: int, db: DB, _operator: OperatorOnly) -> Response:
    """Deactivate a merchant: no new notifications (409); its data, history and open
    notifications stay. Operator token only."""
    await directory.deactivate_merchant(db, merchant_id)
    return Response(status_code=204)


@router.get("/merchants/{merchant_id}/users", tags=["merchants"], responses=_E)
async def list_users(
    merchant_id: int,
    db: DB,
    caller: CallerDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> Page[MerchantUserView]:
    """A merchant's users by id, deactivated ones included."""
    check_merchant(caller, merchant_id)
    return await directory.list_users(db, merchant_id, limit=limit, cursor=cursor)


@router.get("/merchants/{merchant_id}/users/{user_id}", tags=["merchants"], responses=_E)
async def get_user(merchant_id: int, user_id: int, db: DB, caller: CallerDep) -> MerchantUserView:
    check_merchant(caller, merchant_id)
    return await directory.get_user(db, merchant_id, user_id)


@router.patch("/merchants/{merchant_id}/users/{user_id}", tags=["merchants"], responses=_E_PATCH)
async def update_user(
    merchant_id: int, user_id: int, body: MerchantUserUpdate, db: DB, caller: CallerDep
) -> MerchantUserView:
    """Change a user's name, phone, type or on-call flag (409 once deactivated)."""
    check_merchant(caller, merchant_id)
    return await directory.update_user(db, merchant_id, user_id, body)


@router.delete(
    "/merchants/{merchant_id}/users/{user_id}",
    tags=["merchants"],
    responses=_E,
    status_code=204,
    response_class=Response,
)
async def deactivate_user(merchant_id: int, user_id: int, db: DB, caller: CallerDep) -> Response:
    """Deactivate a departed user: asked nothing more, and refused (403) as an answerer from
    the next request on, including on notifications that already asked them."""
    check_merchant(caller, merchant_id)
    await directory.deactivate_user(db, merchant_id, user_id)
    return Response(status_code=204)


@router.get("/merchants/{merchant_id}/documents/{document_id}", tags=["documents"], responses=_E)
async def get_document(
    merchant_id: int, document_id: int, db: DB, caller: CallerDep
) -> DocumentView:
    check_merchant(caller, merchant_id)
    return await directory.get_document(db, merchant_id, document_id)


@router.patch(
    "/merchants/{merchant_id}/documents/{document_id}", tags=["documents"], responses=_E_PATCH
)
async def update_document(
    merchant_id: int, document_id: int, body: DocumentUpdate, db: DB, caller: CallerDep
) -> DocumentView:
    """Change a document's category, title or content."""
    check_merchant(caller, merchant_id)
    return await directory.update_document(db, merchant_id, document_id, body)


@router.delete(
    "/merchants/{merchant_id}/documents/{document_id}",
    tags=["documents"],
    responses=_E,
    status_code=204,
    response_class=Response,
)
async def delete_document(
    merchant_id: int, document_id: int, db: DB, caller: CallerDep
) -> Response:
    """Delete a document (409 while an open notification will write its answer into it)."""
    check_merchant(caller, merchant_id)
    await directory.delete_document(db, merchant_id, document_id)
    return Response(status_code=204)


@router.get("/conversations", tags=["conversations"], responses=_E)
async def list_conversations(
    db: DB,
    caller: CallerDep,
    merchant_id: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> Page[ConversationView]:
    """Customer conversations by id, optionally of one merchant. A merchant key sees its own
    merchant's only, whatever ``merchant_id`` says."""
    if caller.scoped:
        if merchant_id is not None and merchant_id != caller.merchant_id:
            return Page[ConversationView](items=[], next_cursor=None)
        merchant_id = caller.merchant_id
    return await directory.list_conversations(
        db, merchant_id=merchant_id, limit=limit, cursor=cursor
    )


@router.get("/conversations/{conversation_id}", tags=["conversations"], responses=_E)
async def get_conversation(conversation_id: int, db: DB, caller: CallerDep) -> ConversationView:
    await check_conversation(db, caller, conversation_id)
    return await directory.get_conversation(db, conversation_id)


@router.patch("/conversations/{conversation_id}", tags=["conversations"], responses=_E_PATCH)
async def update_conversation(
    conversation_id: int, body: ConversationUpdate, db: DB, caller: CallerDep
) -> ConversationView:
    """Change the customer's language (``null``: the merchant's default)."""
    await check_conversation(db, caller, conversation_id)
    return await directory.update_conversation(db, conversation_id, body)


@router.delete(
    "/conversations/{conversation_id}",
    tags=["conversations"],
    responses=_E,
    status_code=204,
    response_class=Response,
)
async def delete_conversation(conversation_id: int, db: DB, caller: CallerDep) -> Response:
    """Delete a conversation and its messages (409 once a notification refers to it)."""
    await check_conversation(db, caller, conversation_id)
    await directory.delete_conversation(db, conversation_id)
    return Response(status_code=204)
