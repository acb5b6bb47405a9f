"""Bearer-token authentication (DESIGN §4).

When ``NOTIFYFLOW_API_TOKEN`` is set, every route but ``/healthz``, ``/readyz`` and the Twilio
webhooks (which carry Twilio's own signature) requires ``Authorization: Bearer <token>``. It is
middleware, not a route dependency, so unknown routes, ``/docs``, ``/openapi.json`` and
``/metrics`` are covered too and an unauthenticated caller cannot map the API by probing for 404s.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from notifyflow.api.errors import send_envelope

# Probes: an orchestrator checks liveness and readiness without the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
OPEN_PREFIXES = ("/v1/webhooks/twilio/",)


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def token_matches(header: bytes | None, token: bytes) -> bool:
    """Constant-time comparison, so response timing does not reveal the token byte by byte."""
    if header is None:
        return False
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(value.strip(), token)


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
                break
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        message = (
            "missing bearer token: send Authorization: Bearer <NOTIFYFLOW_API_TOKEN>"
            if header is None
            else "invalid bearer token"
        )
        await send_envelope(
            send,
            401,
            "unauthorized",
            message,
            headers=[(b"www-authenticate", b'Bearer realm="notifyflow"')],
        )
