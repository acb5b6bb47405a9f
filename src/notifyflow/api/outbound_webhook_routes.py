"""Outbound webhook subscriptions (DESIGN §8): a merchant's receivers of signed events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from notifyflow.api.deps import DB, AppSettings
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import CallerDep, check_merchant
from notifyflow.models.ids import INT32_MAX
from notifyflow.webhooks import subscriptions
from notifyflow.webhooks.subscriptions import WebhookCreate, WebhookCreated, WebhookView

router = APIRouter(prefix="/v1/merchants/{merchant_id}/webhooks", tags=["webhooks"])

MerchantId = Annotated[int, Path(ge=1, le=INT32_MAX)]
_E: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Unreadable body (not UTF-8 JSON)"},
    404: {"model": ErrorEnvelope, "description": "Unknown merchant or webhook"},
    422: {"model": ErrorEnvelope, "description": "A refused URL or unknown event"},
}


@router.post("", status_code=201, responses={**_E, 409: {"model": ErrorEnvelope}})
async def create_webhook(
    merchant_id: MerchantId,
    body: WebhookCreate,
    db: DB,
    caller: CallerDep,
    settings: AppSettings,
) -> WebhookCreated:
    """Subscribe ``url`` to ``events``. The ``secret`` (``whsec_…``) is shown here once:
    receivers verify each delivery's Standard Webhooks signature with it."""
    check_merchant(caller, merchant_id)
    return await subscriptions.create(
        db, merchant_id, body, allow_private=settings.webhook_allow_private
    )


@router.get("", responses=_E)
async def list_webhooks(merchant_id: MerchantId, db: DB, caller: CallerDep) -> list[WebhookView]:
    """The merchant's subscriptions (no secrets), with their last success and last error."""
    check_merchant(caller, merchant_id)
    return await subscriptions.list_for(db, merchant_id)


@router.delete("/{webhook_id}", status_code=204, response_class=Response, responses=_E)
async def delete_webhook(
    merchant_id: MerchantId,
    webhook_id: Annotated[int, Path(ge=1, le=INT32_MAX)],
    db: DB,
    caller: CallerDep,
) -> Response:
    """Stop deliveries to this subscription at once."""
    check_merchant(caller, merchant_id)
    await subscriptions.delete(db, merchant_id, webhook_id)
    return Response(status_code=204)
