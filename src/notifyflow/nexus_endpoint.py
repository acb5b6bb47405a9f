"""The Nexus endpoint Voyager workflows call: created (or corrected) where notifyflow starts
Temporal — ``make run``, the tests, the bench; compose does the same in its one-shot script
(deploy/temporal-search-attributes.sh) with the CLI."""

from __future__ import annotations

import logging

from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import (
    CreateNexusEndpointRequest,
    ListNexusEndpointsRequest,
    UpdateNexusEndpointRequest,
)
from temporalio.client import Client

log = logging.getLogger(__name__)


async def ensure_nexus_endpoint(
    client: Client, name: str, *, namespace: str, task_queue: str
) -> None:
    """Endpoint ``name`` targets ``namespace``/``task_queue`` afterwards: created when missing,
    retargeted when it points elsewhere, left alone when right. Endpoints are cluster-wide, so
    a caller in any namespace reaches notifyflow through it."""
    spec = EndpointSpec(
        name=name,
        target=EndpointTarget(
            worker=EndpointTarget.Worker(namespace=namespace, task_queue=task_queue)
        ),
    )
    listed = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(name=name, page_size=1)
    )
    existing = next((e for e in listed.endpoints if e.spec.name == name), None)
    if existing is None:
        await client.operator_service.create_nexus_endpoint(CreateNexusEndpointRequest(spec=spec))
        log.info("created Nexus endpoint %s -> %s/%s", name, namespace, task_queue)
        return
    if existing.spec.target == spec.target:
        return
    await client.operator_service.update_nexus_endpoint(
        UpdateNexusEndpointRequest(id=existing.id, version=existing.version, spec=spec)
    )
    log.warning("Nexus endpoint %s retargeted to %s/%s", name, namespace, task_queue)
