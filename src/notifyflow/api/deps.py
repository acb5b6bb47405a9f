"""What routes depend on: the session factory and the Temporal client, kept on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from notifyflow.api.errors import TemporalUnavailable
from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory

log = logging.getLogger("notifyflow.api")

CONNECT_TIMEOUT_SECONDS = 5.0


class TemporalHandle:
    """The API's Temporal client, connected on first need.

    The API starts and serves the directory, ``/healthz`` and ``/metrics`` while Temporal is
    down; only routes that start or signal workflows wait for it, and they get a 503 (nothing
    changed) rather than a hang when it cannot be reached.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Client]] | None,
        client: Client | None = None,
        timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self._connect = connect
        self._client = client
        self._timeout = timeout
        self._lock = asyncio.Lock()

    @property
    def client(self) -> Client | None:
        return self._client

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                if self._connect is None:
                    raise TemporalUnavailable("no Temporal client configured")
                try:
                    self._client = await asyncio.wait_for(self._connect(), self._timeout)
                except Exception as exc:  # connection refused, TLS, DNS, timeout, …
                    raise TemporalUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
        return self._client


def get_db(request: Request) -> SessionFactory:
    db: SessionFactory = request.app.state.db
    return db


def get_temporal(request: Request) -> TemporalHandle:
    # The handle, not a client: routes connect only after their input is validated, so a
    # malformed request gets its 4xx even while Temporal is down.
    handle: TemporalHandle = request.app.state.temporal
    return handle


def get_app_settings(request: Request) -> Settings:
    # The app's own settings (task queue, timers), not a re-read of the environment.
    settings: Settings = request.app.state.settings
    return settings


DB = Annotated[SessionFactory, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
Temporal = Annotated[TemporalHandle, Depends(get_temporal)]
