"""Merchant API key views (DESIGN §9). The key itself appears only in ``ApiKeyCreated``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ApiKeyView(BaseModel):
    id: int
    merchant_id: int
    prefix: str = Field(description="The key's public start (nfk_…), to tell keys apart")
    created_at: datetime
    last_used_at: datetime | None = Field(
        default=None, description="Last request with the key, to the minute"
    )
    revoked_at: datetime | None = None


class ApiKeyCreated(BaseModel):
    id: int
    merchant_id: int
    key: str = Field(description="The key (nfk_…): shown once, store it now")
    prefix: str
    created_at: datetime
