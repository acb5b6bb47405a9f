"""Run the reference Voyager against `make run`:

    .venv/bin/python -m examples.voyager.run "¿Hacen envíos a Canadá?" --conversation 1

It registers a ``voyager`` namespace if missing, runs a worker for its workflows there, starts
a CustomerAgentWorkflow for the customer's message and prints the reply once the merchant's
team has answered (answer with `notifyflow answer NOTIF_<n> ...` in another shell). The model
is OPENAI_BASE_URL / OPENAI_API_KEY's; without a key, nothing to think with: set one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import uuid
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from examples.voyager.agent import (
    AdminAgentWorkflow,
    CustomerAgentWorkflow,
    CustomerTurnInput,
    LLMActivities,
)

TASK_QUEUE = "voyager"


async def ensure_namespace(address: str, namespace: str) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
    from temporalio.service import RPCError

    client = await Client.connect(address)
    retention = Duration()
    retention.FromTimedelta(timedelta(days=3))
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace, workflow_execution_retention_period=retention
            )
        )
    except RPCError:
        pass  # it exists already


async def main() -> None:
    from openai import AsyncOpenAI

    parser = argparse.ArgumentParser()
    parser.add_argument("message")
    parser.add_argument("--conversation", type=int, required=True)
    parser.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    parser.add_argument("--namespace", default="voyager")
    parser.add_argument(
        "--endpoint", default=os.environ.get("NOTIFYFLOW_NEXUS_ENDPOINT", "notifyflow")
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    await ensure_namespace(args.address, args.namespace)
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=pydantic_data_converter
    )
    llm = LLMActivities(AsyncOpenAI(max_retries=0, timeout=30))
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[CustomerAgentWorkflow, AdminAgentWorkflow],
        activities=[llm.think],
    ):
        result = await client.execute_workflow(
            CustomerAgentWorkflow.run,
            CustomerTurnInput(
                conversation_id=args.conversation,
                customer_message=args.message,
                endpoint=args.endpoint,
            ),
            id=f"voyager-{uuid.uuid4().hex[:8]}",
            task_queue=TASK_QUEUE,
        )
    logging.getLogger("voyager").info("reply to the customer: %s", result.reply)


if __name__ == "__main__":
    asyncio.run(main())
