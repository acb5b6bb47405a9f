"""A fake of the Instagram/Messenger Send API on 127.0.0.1.

``POST /{version}/{page_id}/messages`` with JSON ``{recipient: {id}, message: {text},
messaging_type, tag?}`` and a Bearer page access token → ``{recipient_id, message_id}``.
Recipients put "outside the window" get Graph error code 10, subcode 2018278, unless the send
uses ``MESSAGE_TAG`` + ``HUMAN_AGENT``. Faults: any Graph error, timeout.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._threaded import ThreadedServer

FAKE_PAGE_TOKEN = "fake-page-access-token-9a8b7c"
GRAPH_VERSION = "v21.0"


@dataclass
class GraphFault:
    kind: Literal["error", "timeout"]
    status: int = 500
    code: int = 2
    subcode: int | None = None
    message: str = "An unexpected error has occurred. Please retry your request later."
    delay: float = 30.0
    recipient: str | None = None
    times: int | None = 1
    used: int = field(default=0, init=False)


def graph_error(status: int, code: int, subcode: int | None, message: str) -> JSONResponse:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(8),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return JSONResponse({"error": error}, status_code=status)


class FakeGraph:
    def __init__(self, page_access_token: str = FAKE_PAGE_TOKEN) -> None:
        self.page_access_token = page_access_token
        self._lock = threading.Lock()
        self._ledger: list[dict[str, Any]] = []
        self._faults: list[GraphFault] = []
        self._outside_window: set[str] = set()
        self._server = ThreadedServer(
            Starlette(
                routes=[Route("/{version}/{page_id}/messages", self._send, methods=["POST"])]
            ),
            "graph",
        )

    def start(self) -> FakeGraph:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def base_url(self) -> str:
        """What ``INSTAGRAM_GRAPH_BASE_URL`` should be."""
        return f"{self._server.base_url}/{GRAPH_VERSION}"

    def reset(self) -> None:
        with self._lock:
            self._ledger.clear()
            self._faults.clear()
            self._outside_window.clear()
        self._server.release_sleepers()

    def close_window(self, *recipients: str) -> None:
        with self._lock:
            self._outside_window.update(recipients)

    def add_fault(self, fault: GraphFault) -> GraphFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_next(
        self,
        status: int,
        code: int,
        subcode: int | None = None,
        message: str = "fault injected",
        *,
        times: int | None = 1,
    ) -> GraphFault:
        return self.add_fault(
            GraphFault(
                "error", status=status, code=code, subcode=subcode, message=message, times=times
            )
        )

    def timeout_next(self, delay: float = 30.0) -> GraphFault:
        return self.add_fault(GraphFault("timeout", delay=delay))

    @property
    def ledger(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._ledger]

    def accepted(self) -> list[dict[str, Any]]:
        return [e for e in self.ledger if e["outcome"] == "accepted"]

    def _take_fault(self, recipient: str) -> GraphFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.recipient in (None, recipient):
                    fault.used += 1
                    if fault.times is not None and fault.used >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _send(self, request: Request) -> Response:
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        entry: dict[str, Any] = {
            "time": datetime.now(UTC),
            "page_id": request.path_params["page_id"],
            "payload": payload,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }

        def done(outcome: str, status: int, message_id: str | None = None) -> None:
            entry.update(outcome=outcome, status=status, message_id=message_id)
            with self._lock:
                self._ledger.append(entry)

        if request.headers.get("authorization") != f"Bearer {self.page_access_token}":
            done("unauthorized", 400)
            return graph_error(400, 190, None, "Invalid OAuth access token.")
        recipient = str((payload.get("recipient") or {}).get("id", ""))
        text = (payload.get("message") or {}).get("text")
        if not recipient or not text:
            done("rejected", 400)
            return graph_error(400, 100, None, "(#100) Invalid parameter")
        fault = self._take_fault(recipient)
        if fault is not None and fault.kind == "timeout":
            done("timeout", 504)
            await self._server.sleep(fault.delay)
            return graph_error(504, 2, None, "timeout")
        if fault is not None:
            done("rejected", fault.status)
            return graph_error(fault.status, fault.code, fault.subcode, fault.message)
        tagged = (
            payload.get("messaging_type") == "MESSAGE_TAG" and payload.get("tag") == "HUMAN_AGENT"
        )
        with self._lock:
            outside = recipient in self._outside_window
        if outside and not tagged:
            done("rejected", 400)
            return graph_error(
                400, 10, 2018278, "(#10) This message is sent outside of allowed window."
            )
        message_id = "m_" + secrets.token_urlsafe(24)
        done("accepted", 200, message_id)
        return JSONResponse({"recipient_id": recipient, "message_id": message_id})
