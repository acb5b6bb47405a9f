"""Merchant service-level settings (DESIGN §10): business hours, timers, first-answer target."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from notifyflow import service_levels
from notifyflow.api.deps import DB, AppSettings
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import CallerDep, check_merchant
from notifyflow.models.ids import INT32_MAX
from notifyflow.service_levels import MerchantSettingsBody, MerchantSettingsView

router = APIRouter(prefix="/v1/merchants/{merchant_id}/settings", tags=["merchants"])

MerchantId = Annotated[int, Path(ge=1, le=INT32_MAX)]
_E: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Unreadable body (not UTF-8 JSON)"},
    404: {"model": ErrorEnvelope, "description": "Unknown merchant"},
    422: {"model": ErrorEnvelope, "description": "A bad value, named in details; nothing changed"},
}


@router.get("", responses=_E)
async def get_settings(
    merchant_id: MerchantId, db: DB, caller: CallerDep, settings: AppSettings
) -> MerchantSettingsView:
    """The merchant's settings and the timers in effect (the deployment's where unset)."""
    check_merchant(caller, merchant_id)
    return await service_levels.read(db, merchant_id, settings)


@router.put("", responses=_E)
async def put_settings(
    merchant_id: MerchantId,
    body: MerchantSettingsBody,
    db: DB,
    caller: CallerDep,
    settings: AppSettings,
) -> MerchantSettingsView:
    """Replace the merchant's settings. New notifications use them at once."""
    check_merchant(caller, merchant_id)
    return await service_levels.write(db, merchant_id, body, settings)
