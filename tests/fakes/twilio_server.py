"""A fake of Twilio's Messages API on 127.0.0.1, speaking its wire format to the real SDK.

Routes (the SDK's paths, with the host rewritten to this server):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` — form fields ``To``, ``From``,
  ``MessagingServiceSid``, ``Body``, ``ContentSid``, ``ContentVariables`` (JSON string),
  ``StatusCallback``; Basic auth (sid, token). 201 with the message resource.
- ``GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` — one message resource.
- ``GET  /2010-04-01/Accounts/{AccountSid}/Messages.json`` — list, filtered by ``To``, ``From``,
  ``DateSent``, ``DateSent<``, ``DateSent>`` (by UTC day, as Twilio does; ``>`` is on or after),
  paged by ``PageSize``/``Page``, newest first.

Validation follows Twilio's documented codes, answered synchronously (real Twilio reports some of
them, like 63016 and 63013, later through a failed status callback; a synchronous 400 exercises
the same mapping), and is as strict as Twilio on everything the product sends:

- ``To`` (and ``From``) are WhatsApp addresses: ``whatsapp:`` + an E.164 number. A bare number
  is another channel (21910, From and To of different channels); a malformed number is 21211
  (To) / 21212 (From). ``MessagingServiceSid`` must be one of the account's (21701).
- ``Body`` at most 1,600 characters, on every channel WhatsApp included (21617).
- ``ContentSid`` must be a template this account has (registered with
  :meth:`FakeTwilio.register_template`, i.e. approved): malformed or unknown, 21655. Its
  ``ContentVariables`` must name exactly the template's placeholders (63028), each value at most
  1,600 characters (21658), keys at most 16 characters and at most 100 pairs (21656), no
  newline/tab/run of five spaces/empty value (63013), and the rendered body within 1,024 (63021).
- A message is ``queued`` (``accepted`` with a Messaging Service) when created, with
  ``date_sent`` null; it becomes ``sent``, with a ``date_sent``, only when :meth:`dispatch` says
  so (Twilio may queue a WhatsApp message for up to 4 h). The list's ``DateSent`` filters, like
  Twilio's, only see messages that have a ``date_sent``.

Status callbacks are recorded, never sent.

Faults are queued with :meth:`FakeTwilio.add_fault` (or the helpers) and consumed by the first
matching send; everything is thread-safe, since the server runs in its own thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes._threaded import ThreadedServer

FAKE_ACCOUNT_SID = "AC" + "0f" * 16
FAKE_AUTH_TOKEN = "fake-twilio-auth-token-5c1d0e"
FAKE_MESSAGING_SERVICE_SID = "MG" + "1e" * 16

MessageKind = Literal["template", "text"]
FaultKind = Literal["http", "timeout", "garbage", "accept_then_fail"]

_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_API = "/2010-04-01/Accounts"
MAX_TEMPLATE_BODY = 1024
MAX_BODY = 1600  # Twilio's limit for Body on every channel, WhatsApp included (21617)
MAX_VARIABLE = 1600  # a Content API variable value (21658)
WINDOW_CLOSED_MESSAGE = (
    "Failed to send freeform message because you are outside the allowed window. If you want "
    "to send messages outside this window, please use a Message Template."
)


def normalize_number(value: str | None) -> str:
    """``whatsapp:+1555…`` and ``+1555…`` compare equal."""
    return (value or "").strip().removeprefix("whatsapp:").strip()


@dataclass
class TwilioFault:
    """One queued fault; the first matching send consumes it (``times`` sends, None = all)."""

    kind: FaultKind
    status: int = 500
    code: int | None = None
    message: str = "Internal Server Error"
    retry_after: int | None = None
    # accept_then_fail: what the client sees after the message was accepted.
    then: Literal["500", "garbage", "timeout"] = "500"
    # timeout: how long the server holds the request (longer than the client's timeout).
    delay: float = 30.0
    to: str | None = None
    message_kind: MessageKind | None = None
    predicate: Callable[[dict[str, Any]], bool] | None = None
    times: int | None = 1
    used: int = field(default=0, init=False)

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.to is not None and normalize_number(self.to) != entry["to"]:
            return False
        if self.message_kind is not None and self.message_kind != entry["kind"]:
            return False
        return self.predicate is None or bool(self.predicate(entry))


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's legacy error body (the SDK turns it into TwilioRestException)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _parse_filter_date(value: str) -> date:
    """Twilio filters ``DateSent`` by day: ``2024-05-01`` or the SDK's ``2024-05-01T…Z``."""
    text = value.strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).date()


class FakeTwilio:
    """The fake server: ledger, accepted messages, template registry, faults."""

    def __init__(
        self, account_sid: str = FAKE_ACCOUNT_SID, auth_token: str = FAKE_AUTH_TOKEN
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._ledger: list[dict[str, Any]] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._templates: dict[str, str] = {}
        self._campaigns: dict[str, str] = {}
        self._services: set[str] = {FAKE_MESSAGING_SERVICE_SID}
        self._in_flight = 0
        self._faults: list[TwilioFault] = []
        self._closed_windows: set[str] = set()
        self._server = ThreadedServer(self._app(), "twilio")

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def base_url(self) -> str:
        """What ``TWILIO_API_BASE_URL`` should be."""
        return self._server.base_url

    def reset(self) -> None:
        """Forget requests, messages, templates, faults and closed windows."""
        with self._lock:
            self._ledger.clear()
            self._messages.clear()
            self._templates.clear()
            self._campaigns.clear()
            self._faults.clear()
            self._closed_windows.clear()
        self._server.release_sleepers()

    # ---- configuration ---------------------------------------------------------------------

    def register_template(self, content_sid: str, body: str, campaign: str | None = None) -> None:
        """An approved template of this account: only these can be sent (21655 otherwise);
        they are rendered, counted (63028) and length-checked (63021). ``campaign`` is a
        label for the tests' own bookkeeping (:meth:`campaign_of`)."""
        with self._lock:
            self._templates[content_sid] = body
            if campaign is not None:
                self._campaigns[content_sid] = campaign

    def add_messaging_service(self, sid: str) -> None:
        """Another Messaging Service of this account (21701 for any other)."""
        with self._lock:
            self._services.add(sid)

    def campaign_of(self, content_sid: str | None) -> str | None:
        """The label a template was registered with."""
        with self._lock:
            return self._campaigns.get(content_sid or "")

    def template_body(self, content_sid: str) -> str | None:
        with self._lock:
            return self._templates.get(content_sid)

    def dispatch(self, sid: str | None = None) -> int:
        """Twilio hands queued messages (``sid``, or all) to WhatsApp: status ``sent`` and a
        ``date_sent``. Returns how many changed."""
        now = datetime.now(UTC)
        changed = 0
        with self._lock:
            for item in self._messages.values():
                resource = item["resource"]
                if sid is not None and resource["sid"] != sid:
                    continue
                if resource["date_sent"] is None:
                    resource["status"] = "sent"
                    resource["date_sent"] = format_datetime(now)
                    resource["date_updated"] = format_datetime(now)
                    item["sent"] = now
                    changed += 1
        return changed

    @property
    def in_flight(self) -> int:
        """Requests being handled right now (held, or parked in a simulated timeout): a
        message may still be accepted while this is above zero."""
        with self._lock:
            return self._in_flight

    def close_window(self, *numbers: str) -> None:
        """Free-form sends to these numbers fail with 63016 until reopened."""
        with self._lock:
            self._closed_windows.update(normalize_number(n) for n in numbers)

    def open_window(self, *numbers: str) -> None:
        with self._lock:
            self._closed_windows.difference_update(normalize_number(n) for n in numbers)

    def add_fault(self, fault: TwilioFault) -> TwilioFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_next(
        self,
        status: int,
        code: int,
        message: str = "fault injected",
        *,
        to: str | None = None,
        kind: MessageKind | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
    ) -> TwilioFault:
        """The next matching send(s) get ``status`` with Twilio error ``code``."""
        return self.add_fault(
            TwilioFault(
                "http",
                status=status,
                code=code,
                message=message,
                to=to,
                message_kind=kind,
                times=times,
                retry_after=retry_after,
            )
        )

    def timeout_next(
        self,
        delay: float = 30.0,
        *,
        to: str | None = None,
        kind: MessageKind | None = None,
        times: int | None = 1,
    ) -> TwilioFault:
        """Hold the next matching send(s) for ``delay`` s without accepting them."""
        return self.add_fault(
            TwilioFault("timeout", delay=delay, to=to, message_kind=kind, times=times)
        )

    def garbage_next(
        self, *, to: str | None = None, kind: MessageKind | None = None, times: int | None = 1
    ) -> TwilioFault:
        """Answer the next matching send(s) 200 with a body that is not JSON (not accepted)."""
        return self.add_fault(TwilioFault("garbage", to=to, message_kind=kind, times=times))

    def accept_then_fail_next(
        self,
        then: Literal["500", "garbage", "timeout"] = "500",
        *,
        to: str | None = None,
        kind: MessageKind | None = None,
        times: int | None = 1,
        delay: float = 30.0,
    ) -> TwilioFault:
        """Accept the message (it counts as sent), then answer 500, garbage or nothing."""
        return self.add_fault(
            TwilioFault(
                "accept_then_fail", then=then, to=to, message_kind=kind, times=times, delay=delay
            )
        )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # ---- inspection ------------------------------------------------------------------------

    @property
    def ledger(self) -> list[dict[str, Any]]:
        """Every request, in order: ``method, path, query, fields, headers, time, to, kind,
        outcome, status, code, sid, accepted``."""
        with self._lock:
            return [dict(e) for e in self._ledger]

    def sends(self) -> list[dict[str, Any]]:
        """The ledger's POSTs only."""
        return [e for e in self.ledger if e["method"] == "POST"]

    def accepted(
        self, to: str | None = None, kind: MessageKind | None = None
    ) -> list[dict[str, Any]]:
        """Accepted messages (resource plus ``kind``, ``content_sid``, ``variables``), oldest
        first."""
        with self._lock:
            stored = list(self._messages.values())
        out = []
        for item in stored:
            if to is not None and normalize_number(item["resource"]["to"]) != normalize_number(to):
                continue
            if kind is not None and item["kind"] != kind:
                continue
            out.append(
                {**item["resource"], **{k: item[k] for k in ("kind", "content_sid", "variables")}}
            )
        return out

    def accepted_count(self, to: str, kind: MessageKind | None = None) -> int:
        return len(self.accepted(to, kind))

    def accepted_counts(self) -> dict[tuple[str, MessageKind], int]:
        """How many messages were accepted per (To without prefix, kind)."""
        counts: dict[tuple[str, MessageKind], int] = {}
        for item in self.accepted():
            key = (normalize_number(item["to"]), item["kind"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    # ---- the app ---------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    f"{_API}/{{account_sid}}/Messages.json",
                    self._counted_messages_endpoint,
                    methods=["GET", "POST"],
                ),
                Route(
                    f"{_API}/{{account_sid}}/Messages/{{sid}}.json", self._fetch, methods=["GET"]
                ),
            ]
        )

    def _record(
        self,
        entry: dict[str, Any],
        outcome: str,
        status: int,
        code: int | None = None,
        sid: str | None = None,
        accepted: bool = False,
    ) -> None:
        entry.update(outcome=outcome, status=status, code=code, sid=sid, accepted=accepted)
        with self._lock:
            self._ledger.append(entry)

    def _new_entry(self, request: Request, fields: dict[str, str]) -> dict[str, Any]:
        kind: MessageKind | None = None
        if request.method == "POST":
            kind = "template" if fields.get("ContentSid") else "text"
        return {
            "time": datetime.now(UTC),
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "fields": fields,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "to": normalize_number(fields.get("To")),
            "kind": kind,
        }

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )

    def _reject(
        self,
        entry: dict[str, Any],
        status: int,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        self._record(entry, "rejected", status, code)
        return JSONResponse(
            twilio_error(status, code, message), status_code=status, headers=headers
        )

    def _guard(self, request: Request, entry: dict[str, Any]) -> JSONResponse | None:
        if not self._authorized(request):
            self._record(entry, "unauthorized", 401, 20003)
            return JSONResponse(twilio_error(401, 20003, "Authenticate"), status_code=401)
        if request.path_params["account_sid"] != self.account_sid:
            return self._reject(
                entry, 404, 20404, f"The requested resource {entry['path']} was not found"
            )
        return None

    def _take_fault(self, entry: dict[str, Any]) -> TwilioFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(entry):
                    fault.used += 1
                    if fault.times is not None and fault.used >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _counted_messages_endpoint(self, request: Request) -> Response:
        with self._lock:
            self._in_flight += 1
        try:
            return await self._messages_endpoint(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _messages_endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list(request)
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        entry = self._new_entry(request, fields)
        denied = self._guard(request, entry)
        if denied is not None:
            return denied
        fault = self._take_fault(entry)
        if fault is not None and fault.kind != "accept_then_fail":
            return await self._apply_fault(fault, entry)
        problem = self._validate(fields)
        if problem is not None:
            status, code, message = problem
            return self._reject(entry, status, code, message)
        resource = self._accept(fields, entry)
        if fault is not None:
            return await self._fail_after_accept(fault, entry, resource["sid"])
        self._record(entry, "accepted", 201, sid=resource["sid"], accepted=True)
        return JSONResponse(resource, status_code=201)

    async def _apply_fault(self, fault: TwilioFault, entry: dict[str, Any]) -> Response:
        if fault.kind == "http":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
            code = fault.code if fault.code is not None else fault.status
            return self._reject(entry, fault.status, code, fault.message, headers)
        if fault.kind == "garbage":
            self._record(entry, "garbage", 200)
            return PlainTextResponse("<html><body>upstream glitch</body></html>")
        self._record(entry, "timeout", 504)
        await self._server.sleep(fault.delay)
        return JSONResponse(twilio_error(504, 20504, "Gateway Timeout"), status_code=504)

    async def _fail_after_accept(
        self, fault: TwilioFault, entry: dict[str, Any], sid: str
    ) -> Response:
        self._record(entry, f"accepted_then_{fault.then}", 201, sid=sid, accepted=True)
        if fault.then == "garbage":
            return PlainTextResponse("<html><body>upstream glitch</body></html>")
        if fault.then == "timeout":
            await self._server.sleep(fault.delay)
            return JSONResponse(twilio_error(504, 20504, "Gateway Timeout"), status_code=504)
        return JSONResponse(twilio_error(500, 20500, "Internal Server Error"), status_code=500)

    def _validate(self, fields: dict[str, str]) -> tuple[int, int, str] | None:
        """Twilio's checks, in its order; None when the send is acceptable."""
        to, sender = fields.get("To", ""), fields.get("From", "")
        service = fields.get("MessagingServiceSid", "")
        if not to:
            return 400, 21604, "A 'To' phone number is required."
        if not sender and not service:
            return 400, 21603, "A 'From' phone number is required."
        if not to.startswith("whatsapp:") or (sender and not sender.startswith("whatsapp:")):
            return (
                400,
                21910,
                "Invalid From and To pair. From and To should be of the same channel",
            )
        if not _E164.match(to.removeprefix("whatsapp:")):
            return 400, 21211, f"Invalid 'To' Phone Number: {to}"
        if sender and not _E164.match(sender.removeprefix("whatsapp:")):
            return 400, 21212, f"Invalid From Number (caller ID): {sender}"
        if service:
            with self._lock:
                known = service in self._services
            if not known:
                return 400, 21701, f"The Messaging Service Sid {service} is invalid."
        body, content_sid = fields.get("Body"), fields.get("ContentSid")
        if body and content_sid:
            return 400, 21619, "Send either Body or ContentSid, not both."
        if not body and not content_sid:
            return 400, 21619, "A text message body or media urls must be specified."
        if content_sid:
            return self._validate_template(content_sid, fields.get("ContentVariables"))
        assert body is not None
        if len(body) > MAX_BODY:
            return (
                400,
                21617,
                f"The concatenated message body exceeds the {MAX_BODY} character limit.",
            )
        with self._lock:
            closed = normalize_number(to) in self._closed_windows
        if closed:
            return 400, 63016, WINDOW_CLOSED_MESSAGE
        return None

    def _validate_template(self, content_sid: str, raw: str | None) -> tuple[int, int, str] | None:
        with self._lock:
            template = self._templates.get(content_sid)
        if not _CONTENT_SID.match(content_sid) or template is None:
            return 400, 21655, "The ContentSid is Invalid"
        variables: dict[str, Any] = {}
        if raw:
            try:
                variables = json.loads(raw)
            except ValueError:
                return 400, 21656, "The ContentVariables Parameter is invalid"
            if not isinstance(variables, dict) or len(variables) > 100:
                return 400, 21656, "The ContentVariables Parameter is invalid"
        for key, value in variables.items():
            if len(key) > 16 or not isinstance(value, str):
                return 400, 21656, "The ContentVariables Parameter is invalid"
            if len(value) > MAX_VARIABLE:
                return 400, 21658, "Parameter exceeded character limit"
            if not value.strip() or "\n" in value or "\t" in value or "     " in value:
                return (
                    400,
                    63013,
                    (
                        "Channel policy violation: template parameters must not be empty or "
                        "contain newlines, tabs or more than 4 consecutive spaces"
                    ),
                )
        if set(_PLACEHOLDER.findall(template)) != set(variables):
            return 400, 63028, "Number of parameters does not match the expected number"
        if len(self._render(template, variables)) > MAX_TEMPLATE_BODY:
            return (
                400,
                63021,
                (
                    "Channel invalid content error: the template body with parameters exceeds "
                    f"{MAX_TEMPLATE_BODY} characters"
                ),
            )
        return None

    @staticmethod
    def _render(template: str, variables: dict[str, Any]) -> str:
        return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), m.group(0))), template)

    def _accept(self, fields: dict[str, str], entry: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        sid = "SM" + secrets.token_hex(16)
        content_sid = fields.get("ContentSid")
        variables = json.loads(fields["ContentVariables"]) if fields.get("ContentVariables") else {}
        if content_sid:
            with self._lock:
                template = self._templates.get(content_sid)
            assert template is not None  # validated: only approved templates are accepted
            body = self._render(template, variables)
        else:
            body = fields.get("Body", "")
        stamp = format_datetime(now)
        uri = f"{_API}/{self.account_sid}/Messages/{sid}.json"
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": stamp,
            # Only once Twilio has handed it on (dispatch): a queued message has none.
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Twilio answers "accepted" while a Messaging Service still picks the sender.
            "status": "queued" if fields.get("From") else "accepted",
            "subresource_uris": {
                "media": f"{_API}/{self.account_sid}/Messages/{sid}/Media.json",
                "feedback": f"{_API}/{self.account_sid}/Messages/{sid}/Feedback.json",
            },
            "to": fields["To"],
            "uri": uri,
        }
        with self._lock:
            self._messages[sid] = {
                "resource": resource,
                "created": now,
                "sent": None,
                "kind": entry["kind"],
                "content_sid": content_sid,
                "variables": variables,
                "status_callback": fields.get("StatusCallback"),
            }
        return resource

    async def _fetch(self, request: Request) -> Response:
        entry = self._new_entry(request, {})
        denied = self._guard(request, entry)
        if denied is not None:
            return denied
        sid = request.path_params["sid"]
        with self._lock:
            item = self._messages.get(sid)
        if item is None:
            return self._reject(
                entry, 404, 20404, f"The requested resource {request.url.path} was not found"
            )
        self._record(entry, "fetched", 200, sid=sid)
        return JSONResponse(item["resource"])

    def _list(self, request: Request) -> Response:
        entry = self._new_entry(request, {})
        denied = self._guard(request, entry)
        if denied is not None:
            return denied
        q = request.query_params
        try:
            bounds = [
                (op, _parse_filter_date(q[name]))
                for name, op in (("DateSent", "eq"), ("DateSent<", "le"), ("DateSent>", "ge"))
                if q.get(name)
            ]
            page_size = min(max(int(q.get("PageSize", "50")), 1), 1000)
            page = max(int(q.get("Page", "0")), 0)
        except ValueError:
            return self._reject(entry, 400, 20001, "Invalid filter or paging parameter")
        with self._lock:
            stored = sorted(self._messages.values(), key=lambda m: m["created"], reverse=True)
        selected = []
        for item in stored:
            res = item["resource"]
            if q.get("To") and normalize_number(q["To"]) != normalize_number(res["to"]):
                continue
            if q.get("From") and normalize_number(q["From"]) != normalize_number(res["from"]):
                continue
            if bounds and item["sent"] is None:
                continue  # not sent yet: no DateSent for any filter to match
            if not all(self._date_ok(item["sent"], op, bound) for op, bound in bounds):
                continue
            selected.append(res)
        start = page * page_size
        chunk = selected[start : start + page_size]
        base = f"{_API}/{self.account_sid}/Messages.json"
        keep = {k: v for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(n: int) -> str:
            return f"{base}?{urlencode({**keep, 'PageSize': page_size, 'Page': n})}"

        has_next = start + page_size < len(selected)
        body = {
            "messages": chunk,
            "end": start + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) + f"&PageToken=PA{page + 1}" if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }
        self._record(entry, "listed", 200)
        return JSONResponse(body)

    @staticmethod
    def _date_ok(sent: datetime, op: str, bound: date) -> bool:
        day = sent.date()
        if op == "eq":
            return day == bound
        if op == "le":
            return day <= bound
        return day >= bound
