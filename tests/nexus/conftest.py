"""Nexus fixtures: Voyager's own namespace on the session's dev server, an endpoint to
notifyflow's task queue, and a notifyflow worker that serves the Nexus service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from notifyflow.nexus_endpoint import ensure_nexus_endpoint
from notifyflow.nexus_handler import NotificationServiceHandler
from notifyflow.worker import build_activities, build_worker
from tests.fixtures.lifecycle import settings_for


@dataclass
class Voyager:
    client: Client
    endpoint: str
    task_queue: str


@pytest_asyncio.fixture
async def voyager(dev_env, task_queue) -> AsyncIterator[Voyager]:  # type: ignore[no-untyped-def]
    """Voyager's own namespace on the dev server, and an endpoint to notifyflow's task queue."""
    namespace = f"voyager-{uuid.uuid4().hex[:8]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=_duration(timedelta(days=1)),
        )
    )
    endpoint = f"notifyflow-{uuid.uuid4().hex[:8]}"
    await ensure_nexus_endpoint(
        dev_env.client, endpoint, namespace=dev_env.client.namespace, task_queue=task_queue
    )
    # Idempotent: a second call with the same target changes nothing.
    await ensure_nexus_endpoint(
        dev_env.client, endpoint, namespace=dev_env.client.namespace, task_queue=task_queue
    )
    client = await _connect_namespace(dev_env.client, namespace)
    yield Voyager(client=client, endpoint=endpoint, task_queue=f"voyager-{uuid.uuid4().hex[:6]}")


async def _connect_namespace(client: Client, namespace: str) -> Client:
    # A new namespace can take a moment to be served by the frontend.
    for _ in range(50):
        try:
            other = await Client.connect(
                client.service_client.config.target_host,
                namespace=namespace,
                data_converter=pydantic_data_converter,
            )
            await other.count_workflows()
            return other
        except Exception:  # noqa: BLE001 - retried until the namespace is served
            await asyncio.sleep(0.1)
    raise AssertionError(f"namespace {namespace} never became usable")


def _duration(delta: timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(delta)
    return out


def notifyflow_worker(dev_env: Any, db: Any, task_queue: str, channel: Any) -> Worker:
    from notifyflow.ai.offline import OfflineProvider

    settings = settings_for(task_queue)
    return build_worker(
        dev_env.client,
        task_queue,
        build_activities(db, OfflineProvider(), channel),
        nexus_handlers=[NotificationServiceHandler(db, settings)],
    )
