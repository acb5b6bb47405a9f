"""Merchant API keys (DESIGN §9): create (the key is shown once), list, revoke. Operator
token only: a merchant key can neither mint keys nor revoke its siblings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from notifyflow import api_keys
from notifyflow.api.deps import DB
from notifyflow.api.errors import ErrorEnvelope
from notifyflow.api.scope import OperatorOnly
from notifyflow.models.api_keys import ApiKeyCreated, ApiKeyView
from notifyflow.models.pages import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    int_key,
)

router = APIRouter(prefix="/v1/merchants/{merchant_id}/api-keys", tags=["api keys"])

_E: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope, "description": "A merchant key: the operator token is needed"},
    404: {"model": ErrorEnvelope, "description": "Unknown merchant or key"},
}


@router.post("", status_code=201, responses=_E)
async def create_api_key(merchant_id: int, db: DB, _operator: OperatorOnly) -> ApiKeyCreated:
    """A new key for the merchant. ``key`` (``nfk_…``) is shown here once and stored only as a
    hash: keep it now. Send it as ``Authorization: Bearer <key>``."""
    return await api_keys.create_key(db, merchant_id)


@router.get("", responses=_E)
async def list_api_keys(
    merchant_id: int,
    db: DB,
    _operator: OperatorOnly,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(max_length=512, description="The previous page's next_cursor")
    ] = None,
) -> Page[ApiKeyView]:
    """The merchant's keys, oldest first, without the keys themselves; revoked ones carry
    ``revoked_at``. A page of them."""
    check_limit(limit)
    after = int_key(decode_cursor("api-keys", cursor))
    views = await api_keys.list_keys(
        db, merchant_id, limit=limit + 1, after=after[0] if after else 0
    )
    more = len(views) > limit
    views = views[:limit]
    next_cursor = encode_cursor("api-keys", [views[-1].id]) if more and views else None
    return Page[ApiKeyView](items=views, next_cursor=next_cursor)


@router.delete("/{key_id}", status_code=204, response_class=Response, responses=_E)
async def revoke_api_key(
    merchant_id: int, key_id: int, db: DB, _operator: OperatorOnly
) -> Response:
    """Revoke at once: the next request with the key, on any API process, is 401."""
    await api_keys.revoke_key(db, key_id, merchant_id=merchant_id)
    return Response(status_code=204)
