"""Corrections of a delivered answer (DESIGN §10): the CorrectionWorkflow's input and result,
the API's reply, and the ids that make one correction one send. Pure: the workflow imports it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from notifyflow.models.ids import format_notification_id


class CorrectionStatus(StrEnum):
    """A version's send: ``pending`` until the CorrectionWorkflow has reached the customer
    (``sent``) or given up (``failed``)."""

    pending = "pending"
    sent = "sent"
    failed = "failed"


def correction_workflow_id(notification_id: int, version: int) -> str:
    """``NOTIF_7:correction-2``: one workflow per notification and version, so starting it
    again (a client's retry, the sweeper) joins or finds the first run, never a second send."""
    return f"{format_notification_id(notification_id)}:correction-{version}"


class CorrectionInput(BaseModel):
    notification_id: int
    version: int = Field(ge=2)


class CorrectionFailure(BaseModel):
    notification_id: int
    version: int
    reason: str


class CorrectionResult(BaseModel):
    notification_id: int
    version: int
    status: CorrectionStatus
    method: str | None = None  # campaign | direct
    provider_message_id: str | None = None
    reason: str | None = None


class CorrectionAccepted(BaseModel):
    """``POST /v1/notifications/{id}/correct``: the version recorded (the Document's content
    is already this version); the customer's message goes out durably."""

    notification_id: str
    version: int
    status: CorrectionStatus
    # True when this request repeated one already taken (same correction_id, or the same
    # person sending the current version's answer again): nothing new was recorded or sent.
    duplicate: bool = False
