"""HTTP API fixtures: the real app over the session's real database, driven in-process through
httpx's ASGI transport (no server, no port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from notifyflow.api.app import create_app
from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory

BASE_URL = "http://notifyflow.test"

# Nothing listens on port 1: a Temporal that is certainly unreachable.
NO_TEMPORAL = "127.0.0.1:1"


def make_settings(**env: Any) -> Settings:
    return Settings(**{"TEMPORAL_ADDRESS": NO_TEMPORAL, **env})


def client_for(app: FastAPI) -> httpx.AsyncClient:
    # raise_app_exceptions=False: a 500 is asserted as a response, as a real client sees it.
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=BASE_URL
    )


@pytest.fixture(scope="session")
def api_app(db: SessionFactory) -> FastAPI:
    """The directory API without Temporal (it is never needed by these routes)."""
    return create_app(make_settings(), session_factory=db)


@pytest_asyncio.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(api_app) as client:
        yield client


@pytest.fixture
def app_with(db: SessionFactory) -> Callable[..., FastAPI]:
    """An app with particular settings: ``app_with(NOTIFYFLOW_API_TOKEN="s3cret")``."""

    def make(**env: Any) -> FastAPI:
        return create_app(make_settings(**env), session_factory=db)

    return make


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> Any:
    """The response is ``status`` with the DESIGN §4 error envelope; returns ``details``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error["message"] and "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return error["details"]


def paths(details: Any) -> set[str]:
    return {d["path"] for d in details or []}
