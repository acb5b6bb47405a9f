"""Instagram messaging through the Graph API: ``POST {base}/{page_id}/messages``.

A reply inside the standard 24-hour window goes as ``messaging_type: RESPONSE``; a human's reply
after it (up to 7 days) as ``MESSAGE_TAG`` with ``tag: HUMAN_AGENT``, which needs the
``human_agent`` permission and must not be used for automated messages. Instagram has no
templates: ``send_template`` always fails permanently.

Graph errors become SendError: code 10 with subcode 2018278 (outside the window) → window
closed; codes 4, 17, 32, 613 and HTTP 429 → retry; 5xx and timeouts → retry, ambiguous.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx

from notifyflow.channels.base import OutboundTemplate, OutboundText, SendError, SendResult
from notifyflow.channels.console import mask_address
from notifyflow.config import Settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
OUTSIDE_WINDOW = (10, 2018278)
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
# 190: the access token is invalid or expired; 10/200: the app lacks the permission.
CONFIG_CODES = frozenset({190, 10, 200})


def send_error_from_graph(status: int, payload: Any) -> SendError:
    """Map a Graph API error answer to a SendError."""
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    subcode = error.get("error_subcode")
    message = str(error.get("message") or f"Graph API answered {status}")
    extra = {"http_status": str(status)}
    if subcode is not None:
        extra["error_subcode"] = str(subcode)
    label = str(code) if code is not None else str(status)
    if (code, subcode) == OUTSIDE_WINDOW:
        return SendError(label, message, window_closed=True, extra=extra)
    if status == 429 or code in RATE_LIMIT_CODES:
        return SendError(label, message, retryable=True, extra=extra)
    if status >= 500:
        return SendError(label, message, retryable=True, ambiguous=True, extra=extra)
    if status in (401, 403) or code in CONFIG_CODES:
        return SendError(label, message, config_error=True, extra=extra)
    return SendError(label, message, extra=extra)


class InstagramChannel:
    """The Instagram channel; ``sender`` is the page id, ``to`` the customer's IGSID."""

    name = "instagram"

    def __init__(
        self,
        settings: Settings,
        page_access_token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._base_url = settings.instagram_graph_base_url
        self._token = page_access_token
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
        return self._http

    async def send_text(self, message: OutboundText) -> SendResult:
        if not self._token:
            raise SendError(
                "instagram_not_configured", "no Instagram page access token", config_error=True
            )
        payload: dict[str, Any] = {
            "recipient": {"id": message.to},
            "message": {"text": message.body},
        }
        if message.human_agent:
            payload.update(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
        else:
            payload["messaging_type"] = "RESPONSE"
        url = f"{self._base_url}/{message.sender}/messages"
        try:
            answer = await self._client().post(
                url, json=payload, headers={"Authorization": f"Bearer {self._token}"}
            )
        except httpx.ConnectError as exc:
            raise SendError("network", f"cannot connect: {exc}", retryable=True) from exc
        except httpx.TimeoutException as exc:
            raise SendError("timeout", "no answer in time", retryable=True, ambiguous=True) from exc
        except httpx.HTTPError as exc:
            raise SendError(
                "network", f"{type(exc).__name__}: {exc}", retryable=True, ambiguous=True
            ) from exc
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code >= 400:
            error = send_error_from_graph(answer.status_code, body)
            log.warning("instagram text to %s refused: %s", mask_address(message.to), error)
            raise error
        message_id = body.get("message_id") if isinstance(body, dict) else None
        if not message_id:
            raise SendError(
                "bad_response",
                "Graph API answered without a message_id",
                retryable=True,
                ambiguous=True,
            )
        log.info("instagram text to %s accepted as %s", mask_address(message.to), message_id)
        return SendResult(provider_message_id=str(message_id), status="sent")

    async def send_template(self, message: OutboundTemplate) -> SendResult:
        raise SendError("instagram_no_templates", "Instagram has no message templates")

    async def find_accepted(
        self, to: str, sender: str, since: datetime, body_or_content_sid: str
    ) -> str | None:
        """The Send API cannot be asked what it took: a retry sends again."""
        return None

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    aclose = close  # the worker closes resources with ``aclose()``
