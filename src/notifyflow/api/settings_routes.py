"""Merchant service-level settings (DESIGN §10): business hours, timers, first-answer target."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import AwareDatetime

from notifyflow import service_levels
from notifyflow.api.deps import DB, AppSettings, Temporal
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import CallerDep, check_merchant
from notifyflow.models.ids import INT32_MAX
from notifyflow.service_levels import MerchantSettingsBody, MerchantSettingsView, SlaReport

log = logging.getLogger("notifyflow.api")

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
    temporal: Temporal,
) -> MerchantSettingsView:
    """Replace the merchant's settings. New notifications use them at once; waiting ones are
    retimed by a signal each (``waiting_retimed``; null when Temporal could not be reached —
    they then keep the timers they started with)."""
    check_merchant(caller, merchant_id)
    view = await service_levels.write(db, merchant_id, body, settings)
    try:
        client = await temporal.get()
        service = service_levels.snapshot(
            await _settings_row(db, merchant_id), view.timezone, settings, {}, urgent=False
        )
        view.waiting_retimed = await asyncio.wait_for(
            service_levels.retime_waiting(client, merchant_id, service), RETIME_WAIT
        )
    except Exception as exc:  # noqa: BLE001 - the settings are stored; say what did not happen
        log.warning("merchant %d: waiting notifications not retimed: %s", merchant_id, exc)
    return view


RETIME_WAIT = 10.0


async def _settings_row(db: DB, merchant_id: int) -> Any:
    async with db() as session:
        return await service_levels.load(session, merchant_id)


sla_router = APIRouter(prefix="/v1/merchants/{merchant_id}/sla", tags=["merchants"])


@sla_router.get("", responses=_E)
async def sla_report(
    merchant_id: MerchantId,
    db: DB,
    caller: CallerDep,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> SlaReport:
    """First-answer service level of the notifications requested in [since, until) (default:
    the last 30 days): how many, the share answered within target, time-to-first-answer
    p50/p90 (business time when the merchant has hours), breaches; CSAT is null (not
    collected yet)."""
    check_merchant(caller, merchant_id)
    return await service_levels.report(db, merchant_id, since, until)
