"""A fake OpenAI-compatible server on 127.0.0.1 for the real ``openai`` SDK.

Routes: ``POST /v1/chat/completions`` and ``POST /v1/responses`` (non-streaming). With structured
outputs (``response_format.type == "json_schema"`` on chat, ``text.format.type ==
"json_schema"`` on responses) the answer is a JSON object valid for the schema, made by a
pluggable *responder* (:class:`FakeAIRequest` → content string). The default responder:

- picks, for an enum, the value named in the last user message (else the first value);
- fills strings with the last user message, tags stripped and whitespace collapsed, trimmed to
  ``maxLength``; booleans ``true``; numbers their minimum or 0; required properties only.

Without a schema it answers the echo text. Faults (queued, first match consumed): ``http``
(any status, with ``Retry-After``), ``timeout``, ``garbage_body`` (non-JSON HTTP body),
``non_json`` / ``schema_invalid`` / ``empty`` content, ``refusal``, ``length``.

Requests are checked as the real API checks them, with its 400 ``invalid_request_error``:
``model`` and a non-empty ``messages`` (``input``) list with known roles; ``max_tokens`` a
positive integer; a ``json_schema`` format with a ``name`` of at most 64 ``[A-Za-z0-9_-]`` and a
``schema``; and with ``strict: true`` the structured-outputs rules (:func:`strict_schema_problem`):
the root an object, every object ``additionalProperties: false`` with every property
``required``, only supported keywords (no ``minLength``, ``maxLength``, ``default``, ``allOf``,
``oneOf``, ``not``, ``if``/``then``/``else``, ``patternProperties``, …), at most 10 levels of
nesting, 5,000 properties and 1,000 enum values; ``$ref`` only to ``#/$defs/…`` (or ``#``).
An answer never runs past ``max_tokens`` (4 characters a token): a longer one is cut with
``finish_reason: "length"`` (``incomplete`` on responses), as the model's would be.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes._threaded import ThreadedServer

FAKE_OPENAI_KEY = "sk-fake-0123456789abcdef"

Endpoint = Literal["chat", "responses"]
# "slow" answers as usual, late: after ``delay`` or when release_held() is called.
OpenAIFaultKind = Literal[
    "http",
    "timeout",
    "garbage_body",
    "non_json",
    "schema_invalid",
    "empty",
    "refusal",
    "length",
    "slow",
]

_TAG = re.compile(r"</?[A-Za-z_][A-Za-z0-9_\-]*>")
_SPACE = re.compile(r"\s+")
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# Structured outputs with strict: true (OpenAI's "Supported schemas"): what a schema may use.
STRICT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "description",
        "title",
        # strings
        "pattern",
        "format",
        # numbers
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        # arrays
        "minItems",
        "maxItems",
    }
)
STRICT_MAX_DEPTH = 10
STRICT_MAX_PROPERTIES = 5000
STRICT_MAX_ENUM = 1000


def strict_schema_problem(schema: Any) -> str | None:
    """Why the real API refuses ``schema`` for ``strict: true`` structured outputs (its error
    message, without the ``Invalid schema for response_format '…':`` prefix), else None."""
    if not isinstance(schema, dict):
        return "schema must be a JSON Schema object"
    if schema.get("type") != "object" or "anyOf" in schema:
        got = schema.get("type")
        return f"In context=(), schema must be a JSON Schema of 'type: \"object\"', got '{got}'."
    counts = {"properties": 0}
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    problem = _strict_node(schema, (), 1, counts, schema, defs)
    if problem is None and counts["properties"] > STRICT_MAX_PROPERTIES:
        problem = f"the schema has more than {STRICT_MAX_PROPERTIES} object properties"
    return problem


def _strict_node(
    node: Any,
    context: tuple[str, ...],
    depth: int,
    counts: dict[str, int],
    root: dict[str, Any],
    defs: dict[str, Any],
) -> str | None:
    where = f"In context={context!r}, "
    if not isinstance(node, dict):
        return where + "schema must be an object"
    if depth > STRICT_MAX_DEPTH:
        return where + f"the schema is nested more than {STRICT_MAX_DEPTH} levels deep"
    for key in node:
        if key not in STRICT_KEYWORDS:
            return where + f"'{key}' is not permitted."
    if "$ref" in node:
        ref = node["$ref"]
        if ref != "#" and not (
            isinstance(ref, str)
            and ref.startswith(("#/$defs/", "#/definitions/"))
            and ref.split("/", 2)[2] in defs
        ):
            return where + f"reference {ref!r} can't be resolved."
        return None
    if "enum" in node and len(node["enum"]) > STRICT_MAX_ENUM:
        return where + f"enum has more than {STRICT_MAX_ENUM} values"
    kinds = node.get("type")
    kind_set = set(kinds) if isinstance(kinds, list) else {kinds}
    if "object" in kind_set or "properties" in node:
        if node.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        props = node.get("properties", {})
        counts["properties"] += len(props)
        missing = [name for name in props if name not in node.get("required", [])]
        if missing or set(node.get("required", [])) - set(props):
            return (
                where + "'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{(missing or ['?'])[0]}'."
            )
        for name, sub in props.items():
            found = _strict_node(sub, (*context, "properties", name), depth + 1, counts, root, defs)
            if found:
                return found
    if "items" in node:
        found = _strict_node(node["items"], (*context, "items"), depth + 1, counts, root, defs)
        if found:
            return found
    for i, branch in enumerate(node.get("anyOf", [])):
        found = _strict_node(branch, (*context, "anyOf", str(i)), depth + 1, counts, root, defs)
        if found:
            return found
    for section in ("$defs", "definitions"):
        for name, sub in node.get(section, {}).items():
            found = _strict_node(sub, (*context, section, name), depth, counts, root, defs)
            if found:
                return found
    return None


@dataclass(frozen=True)
class FakeAIRequest:
    """A request as the responder and the ledger see it (both endpoints normalized)."""

    endpoint: Endpoint
    model: str
    # [{"role": "system"|"developer"|"user"|"assistant", "content": str}]; responses'
    # ``instructions`` comes first as a system message.
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None
    schema_name: str | None
    max_tokens: int | None
    authorization: str | None
    body: dict[str, Any]

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return ""

    @property
    def prompt_text(self) -> str:
        """Everything the model would read: messages and the schema."""
        parts = [m["content"] for m in self.messages]
        if self.schema is not None:
            parts.append(json.dumps(self.schema))
        return "\n".join(parts)


Responder = Callable[[FakeAIRequest], str]

# A responder's answer that is a function call rather than text (Chat Completions only):
# ``tool_calls_reply(("RequestNotificationTool", {...}))``.
_TOOL_CALLS = "\x00tool_calls:"


def tool_calls_reply(*calls: tuple[str, dict[str, Any]]) -> str:
    return _TOOL_CALLS + json.dumps([{"name": name, "arguments": args} for name, args in calls])


def _tool_calls(content: str | None) -> list[dict[str, Any]] | None:
    if not content or not content.startswith(_TOOL_CALLS):
        return None
    return [
        {
            "id": "call_" + secrets.token_hex(8),
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
        }
        for c in json.loads(content.removeprefix(_TOOL_CALLS))
    ]


@dataclass
class OpenAIFault:
    kind: OpenAIFaultKind
    status: int = 500
    message: str = "The server had an error while processing your request."
    error_type: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    delay: float = 30.0
    endpoint: Endpoint | None = None
    model: str | None = None
    schema_name: str | None = None
    predicate: Callable[[FakeAIRequest], bool] | None = None
    times: int | None = 1
    used: int = field(default=0, init=False)

    def matches(self, request: FakeAIRequest) -> bool:
        if self.endpoint is not None and self.endpoint != request.endpoint:
            return False
        if self.model is not None and self.model != request.model:
            return False
        if self.schema_name is not None and self.schema_name != request.schema_name:
            return False
        return self.predicate is None or bool(self.predicate(request))


def echo_text(request: FakeAIRequest, limit: int = 200) -> str:
    """The last user message without tags, whitespace collapsed, at most ``limit`` chars."""
    text = _SPACE.sub(" ", _TAG.sub(" ", request.last_user_text)).strip()
    return text[:limit].rstrip() or "ok"


def example_for_schema(
    schema: dict[str, Any], hint: str, root: dict[str, Any] | None = None
) -> Any:
    """A value valid for ``schema`` (the subset structured outputs use), guided by ``hint``."""
    root = root if root is not None else schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return example_for_schema(target, hint, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        values = list(schema["enum"])
        lowered = hint.lower()
        for value in values:
            if isinstance(value, str) and re.search(rf"\b{re.escape(value.lower())}\b", lowered):
                return value
        return values[0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            return example_for_schema(branches[0], hint, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props: dict[str, Any] = schema.get("properties", {})
        wanted = schema.get("required", list(props))
        return {
            name: example_for_schema(props[name], hint, root) for name in wanted if name in props
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_for_schema(schema.get("items", {}), hint, root) for _ in range(count)]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        return int(low) if kind == "integer" else float(low)
    if kind == "null":
        return None
    text = hint or "ok"
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    if len(text) < int(schema.get("minLength", 0)):
        text = text.ljust(int(schema["minLength"]), "x")
    return text


def default_responder(request: FakeAIRequest) -> str:
    hint = echo_text(request)
    if request.schema is None:
        return hint
    return json.dumps(example_for_schema(request.schema, hint))


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAI:
    """The fake server: responder, ledger, faults; thread-safe."""

    def __init__(self, api_key: str | None = FAKE_OPENAI_KEY) -> None:
        # None accepts any bearer token; the header is recorded either way.
        self.api_key = api_key
        self._lock = threading.Lock()
        self._ledger: list[dict[str, Any]] = []
        self._faults: list[OpenAIFault] = []
        self._responder: Responder = default_responder
        self._server = ThreadedServer(
            Starlette(
                routes=[
                    Route("/v1/chat/completions", self._chat, methods=["POST"]),
                    Route("/v1/responses", self._responses, methods=["POST"]),
                ]
            ),
            "openai",
        )

    # ---- lifecycle and configuration -------------------------------------------------------

    def start(self) -> FakeOpenAI:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be (ends in ``/v1``)."""
        return f"{self._server.base_url}/v1"

    def reset(self) -> None:
        """Default responder, empty ledger, no faults."""
        with self._lock:
            self._ledger.clear()
            self._faults.clear()
            self._responder = default_responder
        self._server.release_sleepers()

    def set_responder(self, responder: Responder | None) -> None:
        """Replace the content generator (None restores the default)."""
        with self._lock:
            self._responder = responder or default_responder

    def add_fault(self, fault: OpenAIFault) -> OpenAIFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def release_held(self) -> None:
        """End the wait of every request a ``timeout`` (then 504) or ``slow`` fault (then the
        usual answer) is holding now, leaving the faults and the ledger as they are."""
        self._server.release_sleepers()

    def fail_next(
        self,
        status: int,
        message: str = "fault injected",
        *,
        retry_after: float | None = None,
        times: int | None = 1,
        endpoint: Endpoint | None = None,
        schema_name: str | None = None,
    ) -> OpenAIFault:
        return self.add_fault(
            OpenAIFault(
                "http",
                status=status,
                message=message,
                retry_after=retry_after,
                times=times,
                endpoint=endpoint,
                schema_name=schema_name,
            )
        )

    def fault_next(
        self,
        kind: OpenAIFaultKind,
        *,
        times: int | None = 1,
        delay: float = 30.0,
        endpoint: Endpoint | None = None,
        schema_name: str | None = None,
    ) -> OpenAIFault:
        return self.add_fault(
            OpenAIFault(kind, delay=delay, times=times, endpoint=endpoint, schema_name=schema_name)
        )

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    @property
    def ledger(self) -> list[dict[str, Any]]:
        """Every request: ``time, endpoint, model, messages, max_tokens, schema_name, schema,
        authorization, body, outcome, status``."""
        with self._lock:
            return [dict(e) for e in self._ledger]

    def requests(self) -> list[FakeAIRequest]:
        return [e["request"] for e in self.ledger]

    # ---- the app ---------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        return await self._handle(request, "chat")

    async def _responses(self, request: Request) -> Response:
        return await self._handle(request, "responses")

    @staticmethod
    def _normalize(endpoint: Endpoint, body: dict[str, Any], auth: str | None) -> FakeAIRequest:
        messages: list[dict[str, str]] = []
        schema_block: Any = None
        if endpoint == "chat":
            for m in body.get("messages") or []:
                messages.append(
                    {"role": str(m.get("role")), "content": _message_text(m.get("content"))}
                )
            fmt = body.get("response_format") or {}
            if fmt.get("type") == "json_schema":
                schema_block = fmt.get("json_schema") or {}
            max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        else:
            if body.get("instructions"):
                messages.append({"role": "system", "content": str(body["instructions"])})
            raw = body.get("input")
            if isinstance(raw, str):
                messages.append({"role": "user", "content": raw})
            else:
                for item in raw or []:
                    if isinstance(item, dict) and "role" in item:
                        messages.append(
                            {
                                "role": str(item["role"]),
                                "content": _message_text(item.get("content")),
                            }
                        )
            fmt = (body.get("text") or {}).get("format") or {}
            if fmt.get("type") == "json_schema":
                schema_block = fmt
            max_tokens = body.get("max_output_tokens")
        schema = schema_block.get("schema") if isinstance(schema_block, dict) else None
        return FakeAIRequest(
            endpoint=endpoint,
            model=str(body.get("model", "")),
            messages=messages,
            schema=schema,
            schema_name=schema_block.get("name") if isinstance(schema_block, dict) else None,
            max_tokens=max_tokens,
            authorization=auth,
            body=body,
        )

    def _record(self, req: FakeAIRequest, outcome: str, status: int) -> None:
        with self._lock:
            self._ledger.append(
                {
                    "time": datetime.now(UTC),
                    "endpoint": req.endpoint,
                    "model": req.model,
                    "messages": req.messages,
                    "max_tokens": req.max_tokens,
                    "schema_name": req.schema_name,
                    "schema": req.schema,
                    "authorization": req.authorization,
                    "body": req.body,
                    "request": req,
                    "outcome": outcome,
                    "status": status,
                }
            )

    def _take_fault(self, req: FakeAIRequest) -> OpenAIFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(req):
                    fault.used += 1
                    if fault.times is not None and fault.used >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _error(
        status: int,
        message: str,
        type_: str,
        code: str | None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": type_, "param": None, "code": code}},
            status_code=status,
            headers=headers,
        )

    async def _handle(self, request: Request, endpoint: Endpoint) -> Response:
        auth = request.headers.get("authorization")
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            req = self._normalize(endpoint, {}, auth)
            self._record(req, "bad_request", 400)
            return self._error(
                400, f"We could not parse the JSON body: {exc}", "invalid_request_error", None
            )
        req = self._normalize(endpoint, body, auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            self._record(req, "unauthorized", 401)
            return self._error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        problem = self._request_problem(endpoint, body)
        if problem is not None:
            message, param = problem
            self._record(req, "invalid_request", 400)
            return JSONResponse(
                {
                    "error": {
                        "message": message,
                        "type": "invalid_request_error",
                        "param": param,
                        "code": None,
                    }
                },
                status_code=400,
            )
        fault = self._take_fault(req)
        if fault is not None and fault.kind in ("http", "timeout", "garbage_body"):
            return await self._transport_fault(fault, req)
        if fault is not None and fault.kind == "slow":
            await self._server.sleep(fault.delay)
        with self._lock:
            responder = self._responder
        content: str | None
        refusal: str | None = None
        finish = "stop"
        kind = fault.kind if fault is not None else None
        if kind == "non_json":
            content = "Sure! Here is what you asked for, in prose rather than JSON."
        elif kind == "schema_invalid":
            content = json.dumps({"unexpected_field": "not what the schema asked for"})
        elif kind == "empty":
            content = ""
        elif kind == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        else:
            content = responder(req)
            if kind == "length":
                content, finish = content[: max(1, len(content) // 2)], "length"
        if content and req.max_tokens is not None and _tokens(content) > req.max_tokens:
            # The model stops at max_tokens, mid-answer.
            content, finish = content[: req.max_tokens * 4], "length"
        self._record(req, kind or "ok", 200)
        if endpoint == "chat":
            return JSONResponse(self._chat_body(req, content, refusal, finish))
        return JSONResponse(self._responses_body(req, content, refusal, finish))

    @staticmethod
    def _request_problem(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, str] | None:
        """The real API's 400 for a malformed request: (message, param), else None."""
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter", "model"
        if endpoint == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return "[] is too short - 'messages'", "messages"
            for i, m in enumerate(messages):
                if not isinstance(m, dict) or m.get("role") not in ROLES:
                    return f"Invalid value for 'messages[{i}].role'", f"messages[{i}].role"
                if m.get("content") is None and m.get("role") != "assistant":
                    return f"Missing required parameter: 'messages[{i}].content'.", (
                        f"messages[{i}].content"
                    )
            limit_key = "max_tokens" if "max_tokens" in body else "max_completion_tokens"
            fmt = body.get("response_format") or {}
            block = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
            if fmt.get("type") == "json_schema" and not isinstance(block, dict):
                return "Missing required parameter: 'response_format.json_schema'.", (
                    "response_format.json_schema"
                )
            param = "response_format"
        else:
            raw = body.get("input")
            if raw is None or raw == [] or raw == "":
                return "Missing required parameter: 'input'.", "input"
            limit_key = "max_output_tokens"
            fmt = (body.get("text") or {}).get("format") or {}
            block = fmt if fmt.get("type") == "json_schema" else None
            param = "text.format"
        limit = body.get(limit_key)
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            return f"Invalid '{limit_key}': integer below minimum value.", limit_key
        if block is None:
            return None
        name = block.get("name")
        if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
            return (
                f"Invalid '{param}.name': string does not match pattern. Expected a string "
                "that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.",
                f"{param}.name",
            )
        schema = block.get("schema")
        if not isinstance(schema, dict):
            return f"Missing required parameter: '{param}.schema'.", f"{param}.schema"
        if block.get("strict") is True:
            problem = strict_schema_problem(schema)
            if problem is not None:
                return f"Invalid schema for response_format '{name}': {problem}", param
        return None

    async def _transport_fault(self, fault: OpenAIFault, req: FakeAIRequest) -> Response:
        if fault.kind == "garbage_body":
            self._record(req, "garbage_body", 200)
            return PlainTextResponse(
                "<html><body>502 upstream glitch</body></html>",
                headers={"content-type": "application/json"},
            )
        if fault.kind == "timeout":
            self._record(req, "timeout", 504)
            await self._server.sleep(fault.delay)
            return self._error(504, "timeout", "server_error", None)
        self._record(req, f"http_{fault.status}", fault.status)
        headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else None
        type_ = fault.error_type or (
            "requests"
            if fault.status == 429
            else "server_error"
            if fault.status >= 500
            else "invalid_request_error"
        )
        code = fault.error_code or ("rate_limit_exceeded" if fault.status == 429 else None)
        return self._error(fault.status, fault.message, type_, code, headers)

    @staticmethod
    def _usage(req: FakeAIRequest, content: str | None) -> tuple[int, int]:
        prompt = sum(_tokens(m["content"]) for m in req.messages)
        return prompt, _tokens(content or "")

    def _chat_body(
        self, req: FakeAIRequest, content: str | None, refusal: str | None, finish: str
    ) -> dict[str, Any]:
        prompt, completion = self._usage(req, content)
        calls = _tool_calls(content)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls else content,
            "refusal": refusal,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
            finish = "tool_calls"
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def _responses_body(
        self, req: FakeAIRequest, content: str | None, refusal: str | None, finish: str
    ) -> dict[str, Any]:
        prompt, completion = self._usage(req, content)
        if refusal is not None:
            parts: list[dict[str, Any]] = [{"type": "refusal", "refusal": refusal}]
        else:
            parts = [
                {"type": "output_text", "text": content or "", "annotations": [], "logprobs": []}
            ]
        incomplete = finish == "length"
        body = req.body
        return {
            "id": "resp_" + secrets.token_hex(16),
            "object": "response",
            "created_at": time.time(),
            "status": "incomplete" if incomplete else "completed",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": req.model,
            "output": [
                {
                    "type": "message",
                    "id": "msg_" + secrets.token_hex(16),
                    "status": "incomplete" if incomplete else "completed",
                    "role": "assistant",
                    "content": parts,
                }
            ],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": bool(body.get("store", True)),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            },
            "user": None,
            "metadata": {},
        }
