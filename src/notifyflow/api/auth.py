"""Authentication (DESIGN §4, §9): the operator token and merchant API keys.

Every route but ``/healthz``, ``/readyz`` and the Twilio webhooks (which carry Twilio's own
signature) goes through :class:`AuthMiddleware`, which decides who the caller is and puts a
:class:`Caller` in the request scope; the routes then apply it (``notifyflow.api.scope``):

- ``Authorization: Bearer <NOTIFYFLOW_API_TOKEN>`` — the operator: every merchant, every route.
- ``Authorization: Bearer nfk_…`` — a merchant API key: that merchant's data only. The key is
  looked up in the database on every request (one indexed read by its public prefix), so a
  revoked key is refused by every API process from the next request on.
- Anything else is 401 while ``NOTIFYFLOW_API_TOKEN`` is set. When it is not set, the API is
  open as before (the caller is treated as the operator), but a merchant key that is presented
  still scopes the request — and an unknown, revoked or malformed one is still 401.

It is middleware, not a route dependency, so unknown routes, ``/docs``, ``/openapi.json`` and
``/metrics`` are covered too and an unauthenticated caller cannot map the API by probing for
404s. A refusal is counted (``notifyflow_auth_failures_total{reason}``) and logged with its
reason and, for a well-shaped key, its public prefix — never the key or the token.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from notifyflow import api_keys, metrics
from notifyflow.api.errors import send_envelope
from notifyflow.db.session import SessionFactory

log = logging.getLogger("notifyflow.api.auth")

# Probes: an orchestrator checks liveness and readiness without the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
OPEN_PREFIXES = ("/v1/webhooks/twilio/",)

# The request-scope key the middleware sets and ``scope.get_caller`` reads.
CALLER_SCOPE_KEY = "notifyflow.caller"

# No legitimate credential is longer (a key is 61 characters); a huge header is refused
# before anything parses it.
MAX_AUTHORIZATION_BYTES = 1024


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Role(StrEnum):
    operator = "operator"  # the operator token
    open = "open"  # no NOTIFYFLOW_API_TOKEN configured and no key presented
    merchant = "merchant"  # a merchant API key


@dataclass(frozen=True)
class Caller:
    role: Role
    merchant_id: int | None = None
    key_id: int | None = None

    @property
    def scoped(self) -> bool:
        """True for a merchant key: the request may touch only ``merchant_id``'s data."""
        return self.role is Role.merchant


OPERATOR = Caller(Role.operator)
OPEN = Caller(Role.open)


class Refusal(StrEnum):
    """The ``reason`` label of ``notifyflow_auth_failures_total``."""

    missing = "missing"
    malformed_header = "malformed_header"
    invalid_token = "invalid_token"
    malformed_key = api_keys.KeyRefusal.malformed_key.value
    unknown_key = api_keys.KeyRefusal.unknown_key.value
    revoked_key = api_keys.KeyRefusal.revoked_key.value


_MESSAGES = {
    Refusal.missing: "missing credentials: send Authorization: Bearer <NOTIFYFLOW_API_TOKEN> "
    "or Authorization: Bearer <merchant API key>",
    Refusal.malformed_header: "malformed Authorization header: expected 'Bearer <token>'",
    Refusal.invalid_token: "invalid bearer token",
    Refusal.malformed_key: f"malformed API key: expected nfk_ and {api_keys.KEY_LENGTH - 4} "
    "more characters",
    # Unknown and revoked read the same to the caller; the counter and the log tell them apart.
    Refusal.unknown_key: "invalid API key: unknown or revoked",
    Refusal.revoked_key: "invalid API key: unknown or revoked",
}


def bearer_value(header: bytes) -> bytes | None:
    """The credential of ``Bearer <credential>`` (scheme case-insensitive), or None when the
    header is not that shape or holds anything but printable ASCII."""
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    value = value.strip(b" \t")
    if not value or any(not 0x21 <= byte <= 0x7E for byte in value):
        return None
    return value


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, token: str, db: SessionFactory) -> None:
        self.app = app
        self.token = token.encode()
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        outcome = await self._identify(scope, send)
        if outcome is None:
            return  # already answered (503: the key could not be checked)
        if isinstance(outcome, Refusal):
            await self._refuse(scope, send, outcome)
            return
        scope[CALLER_SCOPE_KEY] = outcome
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope, send: Send) -> Caller | Refusal | None:
        headers = [value for name, value in scope.get("headers", []) if name == b"authorization"]
        if not headers:
            return Refusal.missing if self.token else OPEN
        if len(headers) > 1 or len(headers[0]) > MAX_AUTHORIZATION_BYTES:
            return Refusal.malformed_header if self.token else self._open_or_key(headers)
        value = bearer_value(headers[0])
        if value is None:
            return Refusal.malformed_header if self.token else self._open_or_key(headers)
        if self.token and hmac.compare_digest(value, self.token):
            return OPERATOR
        if value.startswith(api_keys.KEY_PREFIX.encode()):
            return await self._key(scope, send, value.decode("ascii"))
        return Refusal.invalid_token if self.token else OPEN

    @staticmethod
    def _open_or_key(headers: list[bytes]) -> Caller | Refusal:
        # Without an operator token the API is open, but a request that carries something
        # key-like in an unreadable header is refused rather than served unscoped.
        if any(api_keys.KEY_PREFIX.encode() in header for header in headers):
            return Refusal.malformed_key
        return OPEN

    async def _key(self, scope: Scope, send: Send, key: str) -> Caller | Refusal | None:
        try:
            found = await api_keys.authenticate(self.db, key)
        except (SQLAlchemyError, OSError) as exc:
            log.error("cannot check an API key: database unavailable: %s", exc.__class__.__name__)
            await send_envelope(
                send,
                503,
                "database_unavailable",
                "the database is unavailable, so the API key cannot be checked; try again shortly",
                headers=[(b"retry-after", b"5")],
            )
            return None
        if isinstance(found, api_keys.KeyRefusal):
            scope["notifyflow.key_prefix"] = (
                key[: len(api_keys.KEY_PREFIX) + 12]
                if found is not api_keys.KeyRefusal.malformed_key
                else None
            )
            return Refusal(found.value)
        return Caller(Role.merchant, merchant_id=found.merchant_id, key_id=found.key_id)

    async def _refuse(self, scope: Scope, send: Send, reason: Refusal) -> None:
        metrics.count_auth_failure(reason.value)
        client = scope.get("client")
        prefix = scope.get("notifyflow.key_prefix")
        log.warning(
            "authentication refused (%s) on %s %s from %s%s",
            reason.value,
            scope.get("method"),
            str(scope.get("path", ""))[:200],
            client[0] if client else "?",
            f", key {prefix}" if prefix else "",
        )
        await send_envelope(
            send,
            401,
            "unauthorized",
            _MESSAGES[reason],
            headers=[(b"www-authenticate", b'Bearer realm="notifyflow"')],
        )
