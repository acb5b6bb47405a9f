"""The Nexus service a Voyager workflow calls (DESIGN §8): the contract only.

Importable with no settings, database or SDK client, so a caller's workflow module can import
it inside its sandbox::

    client = workflow.create_nexus_client(service=NotificationService, endpoint="notifyflow")
    outcome = await client.execute_operation(  # a NotificationOutcome
        NotificationService.request_notification,
        NexusNotificationRequest(type="user_question_request", conversation_id=7,
                                 context={"question": "Do you ship to Canada?"}),
    )

``request_notification`` is a workflow-run operation: the caller waits durably (for days if need
be) until the notification ends, and gets its outcome. The others are synchronous. Bad input is a
non-retryable operation failure whose message starts with the refusal code of the HTTP API
(``not_found: conversation 7 not found``).
"""

from __future__ import annotations

from typing import Any

import nexusrpc
from pydantic import BaseModel, Field

# Pure contracts (pydantic models only): the caller's outcome is the workflow's own result,
# ``notification_id, status, delivery_method, answered_by, customer_text, reason``.
from notifyflow.models.workflow_io import NotificationOutcome

SERVICE_NAME = "NotificationService"


INT32_MAX = 2_147_483_647


class NexusNotificationRequest(BaseModel):
    type: str
    conversation_id: int = Field(ge=1, le=INT32_MAX)
    context: dict[str, Any]
    # The same key returns the same notification; without one, the Nexus request id serves, so
    # a retried start joins the notification it started.
    idempotency_key: str | None = None
    priority: str = "normal"  # or "urgent": on-call users asked at once, timers halved


class NexusAnswer(BaseModel):
    notification_id: str
    answered_by: int = Field(ge=1, le=INT32_MAX)
    answer_json: str


class NexusAnswerAccepted(BaseModel):
    notification_id: str
    status: str
    accepted: bool = True


class NexusClose(BaseModel):
    notification_id: str
    reason: str | None = None


class NexusCustomerMessage(BaseModel):
    """The customer wrote again about an open notification."""

    notification_id: str
    text: str


class NexusCustomerMessageAccepted(BaseModel):
    notification_id: str
    seq: int


class NexusNotificationRef(BaseModel):
    notification_id: str


class NexusNotificationState(BaseModel):
    notification_id: str
    status: str
    type: str
    merchant_id: int
    conversation_id: int
    context: dict[str, Any]
    answered_by: int | None = None
    delivery_method: str | None = None
    close_reason: str | None = None
    recipients: list[int] = Field(default_factory=list)


@nexusrpc.service(name=SERVICE_NAME)
class NotificationService:
    request_notification: nexusrpc.Operation[NexusNotificationRequest, NotificationOutcome]
    answer_notification: nexusrpc.Operation[NexusAnswer, NexusAnswerAccepted]
    close_notification: nexusrpc.Operation[NexusClose, NexusNotificationState]
    get_notification: nexusrpc.Operation[NexusNotificationRef, NexusNotificationState]
    add_customer_message: nexusrpc.Operation[NexusCustomerMessage, NexusCustomerMessageAccepted]


__all__ = [
    "SERVICE_NAME",
    "NexusAnswer",
    "NexusAnswerAccepted",
    "NexusClose",
    "NexusCustomerMessage",
    "NexusCustomerMessageAccepted",
    "NexusNotificationRef",
    "NexusNotificationRequest",
    "NexusNotificationState",
    "NotificationOutcome",
    "NotificationService",
]
