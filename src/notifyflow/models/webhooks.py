"""Workflow and activity payloads of webhook delivery."""

from __future__ import annotations

from pydantic import BaseModel


class WebhookDeliveryInput(BaseModel):
    event_id: int


class WebhookDeliveryResult(BaseModel):
    event_id: int
    delivered: bool
    # Why not: the subscription was deleted, the receiver refused for a day, its address is
    # not allowed any more.
    reason: str | None = None
    attempts: int = 0
