"""WhatsApp through the ``twilio`` SDK's async client.

Free-form messages go as ``Body``; templates as Content API ``ContentSid`` + ``ContentVariables``
and never a ``Body`` (required since 2025-04-01). With ``TWILIO_MESSAGING_SERVICE_SID`` set, sends
name the Messaging Service instead of the merchant's sender.

The SDK has no base-URL setting, so its aiohttp client is subclassed to send
``https://api.twilio.com/…`` to ``TWILIO_API_BASE_URL``; it also sends Basic auth as a header
(aiohttp deprecates its ``auth=`` argument) and applies the timeout the SDK leaves unset.

Failures become :class:`SendError` following platform-facts.md: 429/20429/63018 retry;
63016/131047 window closed; 63013/63021 need a fix (code kept); 63005/63014 permanent;
401/403, 20003, 21655, 63027, 63028, 21606, 63007 configuration errors (the notification ends);
5xx, timeouts and unreadable answers are retryable and *ambiguous* — the message may have been
queued, so check with :meth:`TwilioChannel.find_accepted` before sending again.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from notifyflow.channels.base import (
    VARIABLE_REFUSAL_CODES,
    OutboundTemplate,
    OutboundText,
    SendError,
    SendResult,
    closes_window,
)
from notifyflow.channels.console import mask_address
from notifyflow.config import Settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
STATUS_CALLBACK_PATH = "/v1/webhooks/twilio/status"

RATE_LIMIT_CODES = frozenset({20429, 63018})
PERMANENT_CODES = frozenset({63005, 63014})
AUTH_CODES = frozenset({20003})
# The deployment is misconfigured: 20003 credentials refused, 21655 / 63027 the ContentSid is
# unknown or not approved, 63028 the variables do not match the template, 21606 / 63007 the
# sender is not one of this account's WhatsApp senders.
CONFIG_CODES = AUTH_CODES | frozenset({21655, 63027, 63028, 21606, 63007})

_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_WHITESPACE = re.compile(r"\s+")

# Headers of the last answer seen by the current task (Retry-After for 429s): the SDK's
# exception does not carry them, and a context variable stays with the task that sent.
_last_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "twilio_last_headers", default=None
)


def whatsapp_address(number: str) -> str:
    """``+1555…`` → ``whatsapp:+1555…`` (unchanged when already prefixed)."""
    number = number.strip()
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# The SDK ships no type hints (its modules are Any to mypy): subclassing it is the one way in.
class RebasedAsyncHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's aiohttp client, pointed at ``base_url`` instead of ``*.twilio.com``.

    Build it inside a running event loop (aiohttp sessions belong to one loop)."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        parts = urlsplit(base_url.rstrip("/"))
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        if not parts.netloc.endswith("twilio.com"):
            return url
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._scheme}://{self._netloc}{self._prefix}{parts.path}{query}"

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """One HTTP exchange; the SDK turns the Response into resources or exceptions."""
        send_headers = dict(headers or {})
        if auth is not None:
            send_headers["Authorization"] = _basic_auth(auth[0], auth[1])
        seconds = timeout if timeout is not None else self.timeout
        if self.session is None:
            raise RuntimeError("the Twilio HTTP session is closed")
        async with self.session.request(
            method.upper(),
            self.rebase(url),
            params={k: str(v) for k, v in (params or {}).items()},
            data=data,
            headers=send_headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
            allow_redirects=allow_redirects,
        ) as answer:
            text = await answer.text()
            _last_headers.set({k.lower(): v for k, v in answer.headers.items()})
            return Response(answer.status, text, answer.headers)


def send_error_from_twilio(status: int, code: int | None, message: str) -> SendError:
    """Map Twilio's HTTP status and error code to a SendError (platform-facts.md)."""
    number = code if code is not None else status
    extra = {"http_status": str(status)}
    retry_after = (_last_headers.get() or {}).get("retry-after")
    if retry_after:
        extra["retry_after"] = retry_after
    text = message or f"Twilio answered {status}"
    if closes_window(str(number)):
        return SendError(str(number), text, window_closed=True, extra=extra)
    if status == 429 or number in RATE_LIMIT_CODES:
        return SendError(str(number), text, retryable=True, extra=extra)
    # A refused variable keeps its code: the ledger's caller fixes or shortens it and sends again.
    if str(number) in VARIABLE_REFUSAL_CODES or number in PERMANENT_CODES:
        return SendError(str(number), text, extra=extra)
    if status in (401, 403) or number in CONFIG_CODES:
        return SendError(str(number), text, config_error=True, extra=extra)
    if status >= 500:
        return SendError(str(number), text, retryable=True, ambiguous=True, extra=extra)
    # 401/20003 (credentials), 21xxx (bad request) and the rest: sending again cannot help.
    return SendError(str(number), text, extra=extra)


def _map_exception(exc: BaseException, during: str) -> SendError:
    if isinstance(exc, TwilioRestException):
        code = exc.code if isinstance(exc.code, int) else None
        return send_error_from_twilio(int(exc.status), code, str(exc.msg))
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Never connected: nothing can have been queued.
        return SendError("network", f"{during}: cannot connect: {exc}", retryable=True)
    if isinstance(exc, TimeoutError):
        return SendError("timeout", f"{during}: no answer in time", retryable=True, ambiguous=True)
    if isinstance(exc, aiohttp.ClientError):
        return SendError(
            "network", f"{during}: {type(exc).__name__}: {exc}", retryable=True, ambiguous=True
        )
    if isinstance(exc, TwilioException):
        # A list page answered with a non-200 status carries the raw Response, not a code.
        answer = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(answer, Response) and answer.status_code >= 300:
            try:
                payload = json.loads(answer.text)
            except ValueError:
                payload = {}
            code = payload.get("code") if isinstance(payload, dict) else None
            message = payload.get("message") if isinstance(payload, dict) else None
            return send_error_from_twilio(
                answer.status_code,
                code if isinstance(code, int) else None,
                f"{during}: {message or exc}",
            )
        return SendError("bad_response", f"{during}: {exc}", retryable=True, ambiguous=True)
    if isinstance(exc, ValueError | KeyError | TypeError):
        # A 2xx whose body is not the JSON resource: the message may well be queued.
        return SendError(
            "bad_response", f"{during}: unreadable answer: {exc}", retryable=True, ambiguous=True
        )
    raise exc


def _same_text(left: str | None, right: str) -> bool:
    return _WHITESPACE.sub(" ", left or "").strip() == _WHITESPACE.sub(" ", right).strip()


class TwilioChannel:
    """The WhatsApp channel on Twilio's Messages API."""

    name = "twilio"

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not settings.twilio_account_sid or settings.twilio_auth_token is None:
            raise ValueError(
                "TWILIO_ACCOUNT_SID: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are "
                "required for the twilio channel"
            )
        self._account_sid = settings.twilio_account_sid
        self._auth_token = settings.twilio_auth_token.get_secret_value()
        self._base_url = settings.twilio_api_base_url
        self._messaging_service_sid = settings.twilio_messaging_service_sid
        self.status_callback = f"{settings.public_url}{STATUS_CALLBACK_PATH}"
        self._timeout = timeout
        self._client: Client | None = None
        self._http: RebasedAsyncHttpClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _twilio(self) -> Client:
        """The SDK client, built on first use in the running loop (rebuilt if that changed)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._http = RebasedAsyncHttpClient(self._base_url, self._timeout)
            self._client = Client(
                username=self._account_sid,
                password=self._auth_token,
                account_sid=self._account_sid,
                http_client=self._http,
                environment={},  # no TWILIO_REGION/EDGE from the environment
            )
            self._loop = loop
        return self._client

    def _addressing(self, sender: str) -> dict[str, Any]:
        if self._messaging_service_sid:
            return {"messaging_service_sid": self._messaging_service_sid}
        return {"from_": whatsapp_address(sender)}

    async def send_text(self, message: OutboundText) -> SendResult:
        """A free-form WhatsApp message: ``Body``, no ContentSid."""
        return await self._create(
            "text",
            message.to,
            message.idempotency_key,
            body=message.body,
            **self._addressing(message.sender),
        )

    async def send_template(self, message: OutboundTemplate) -> SendResult:
        """A Content API template: ``ContentSid`` + ``ContentVariables``, no Body."""
        return await self._create(
            "template",
            message.to,
            message.idempotency_key,
            content_sid=message.content_sid,
            content_variables=json.dumps(message.variables, ensure_ascii=False),
            **self._addressing(message.sender),
        )

    async def _create(self, kind: str, to: str, key: str, **fields: Any) -> SendResult:
        client = self._twilio()
        _last_headers.set(None)
        try:
            created = await client.messages.create_async(
                to=whatsapp_address(to), status_callback=self.status_callback, **fields
            )
        except Exception as exc:
            error = _map_exception(exc, f"send {kind}")
            log.warning(
                "twilio %s to %s refused: %s (retryable=%s, ambiguous=%s, window_closed=%s, "
                "key=%s)",
                kind,
                mask_address(to),
                error,
                error.retryable,
                error.ambiguous,
                error.window_closed,
                key,
            )
            raise error from exc
        if not created.sid:
            raise SendError(
                "bad_response",
                "Twilio answered without a message sid",
                retryable=True,
                ambiguous=True,
            )
        log.info(
            "twilio %s to %s accepted as %s (%s)",
            kind,
            mask_address(to),
            created.sid,
            created.status,
        )
        return SendResult(provider_message_id=created.sid, status=str(created.status or "queued"))

    async def find_accepted(
        self, to: str, sender: str, since: datetime, body_or_content_sid: str
    ) -> str | None:
        """The sid of an outbound message to ``to`` created at or after ``since`` whose body
        equals ``body_or_content_sid`` (whitespace-insensitive), else None.

        For a template pass its rendered body: Twilio's message resource shows the rendered
        text, never the ContentSid. A Content SID is accepted but then matches any outbound
        message to that recipient since ``since``. With a Messaging Service the sender is not
        filtered (Twilio picks it). Raises SendError (retryable) when the list call fails.
        """
        client = self._twilio()
        since_utc = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        floor = since_utc.replace(microsecond=0) - timedelta(seconds=1)
        # No DateSent filter: a message Twilio still has queued has no date_sent yet, so the
        # filter would hide exactly the message an ambiguous send may have left behind. The
        # newest 100 to this person are read and the creation time is checked below.
        filters: dict[str, Any] = {
            "to": whatsapp_address(to),
            "limit": 100,
            "page_size": 100,
        }
        if not self._messaging_service_sid:
            filters["from_"] = whatsapp_address(sender)
        try:
            messages = await client.messages.list_async(**filters)
        except Exception as exc:
            raise _map_exception(exc, "list messages") from exc
        any_body = bool(_CONTENT_SID.match(body_or_content_sid.strip()))
        for item in messages:
            if item.direction and not str(item.direction).startswith("outbound"):
                continue
            stamp = item.date_created or item.date_sent
            if isinstance(stamp, datetime) and stamp < floor:
                continue
            if any_body or _same_text(item.body, body_or_content_sid):
                return str(item.sid)
        return None

    async def close(self) -> None:
        """Close the aiohttp session (call from the loop that used the channel)."""
        http, self._http, self._client = self._http, None, None
        if http is not None and http.session is not None:
            await http.session.close()

    aclose = close  # the worker closes resources with ``aclose()``
