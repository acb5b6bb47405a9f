"""Voyager workflows call notifyflow natively (DESIGN §8): a workflow in another namespace asks
a question through the Nexus endpoint, an admin answers over HTTP, and the caller resumes with
the localized customer text. Both histories replay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import NexusOperationError
from temporalio.worker import Replayer, Worker

from notifyflow.api.app import create_app
from notifyflow.history_costs import history_cost
from notifyflow.nexus_service import NexusNotificationRequest, NotificationOutcome
from notifyflow.workflows.notification import NotificationWorkflow
from tests.api.conftest import client_for, make_settings
from tests.figures import figure
from tests.nexus.conftest import Voyager, notifyflow_worker
from tests.nexus.voyager_workflows import VoyagerAsksWorkflow, VoyagerLooksUpWorkflow
from tests.workflows.helpers import until


async def test_a_voyager_workflow_in_its_own_namespace_asks_and_resumes_with_the_answer(
    dev_env, db, task_queue, channel, shop_factory, voyager: Voyager
) -> None:
    shop = await shop_factory()
    request = NexusNotificationRequest(
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context={"question": "Do you ship to Canada?"},
    )
    app = create_app(
        make_settings(TEMPORAL_TASK_QUEUE=task_queue),
        session_factory=db,
        temporal_client=dev_env.client,
    )
    async with (
        notifyflow_worker(dev_env, db, task_queue, channel),
        Worker(
            voyager.client,
            task_queue=voyager.task_queue,
            workflows=[VoyagerAsksWorkflow],
        ),
        client_for(app) as http,
    ):
        caller = await voyager.client.start_workflow(
            VoyagerAsksWorkflow.run,
            args=[voyager.endpoint, request],
            id=f"voyager-{uuid.uuid4().hex[:8]}",
            task_queue=voyager.task_queue,
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        listed = (await http.get(f"/v1/notifications?merchant_id={shop.merchant_id}")).json()
        items = listed["items"] if isinstance(listed, dict) else listed
        (notification,) = items
        public = notification["notification_id"]
        answered = await http.post(
            f"/v1/notifications/{public}/answer",
            json={"answered_by": shop.admins[1].id, "answer": {"answer": "Yes, in 5 days"}},
        )
        assert answered.status_code == 200, answered.text
        outcome = await caller.result()
        assert isinstance(outcome, NotificationOutcome)
        # A retried start of the same operation (same request id) would join: one row only.
        again = (await http.get(f"/v1/notifications?merchant_id={shop.merchant_id}")).json()
        assert len(again["items"] if isinstance(again, dict) else again) == 1
    assert outcome.notification_id == public
    assert outcome.status == "delivered" and outcome.answered_by == shop.admins[1].id
    assert outcome.delivery_method == "direct"
    assert outcome.customer_text and "5 days" in outcome.customer_text
    assert len(channel.to(shop.customer_phone)) == 1
    # Both histories replay against today's code.
    caller_history = await caller.fetch_history()
    await Replayer(
        workflows=[VoyagerAsksWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(caller_history)
    notification_history = await dev_env.client.get_workflow_handle(public).fetch_history()
    await Replayer(
        workflows=[NotificationWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(notification_history)
    # Started with the notification's own workflow task timeout (its fan-out runs in the
    # first workflow task: a dead worker is replaced after 5 s, not the default 10 s).
    started = notification_history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_task_timeout.ToTimedelta() == timedelta(seconds=5)
    mine, theirs = history_cost(notification_history), history_cost(caller_history)
    figure("Nexus-started notification: billable actions", mine.actions)
    figure("Nexus-started notification: history events", mine.events)
    figure("Voyager caller workflow: billable actions", theirs.actions)
    figure("Voyager caller workflow: history events", theirs.events)


async def test_bad_input_through_nexus_is_a_final_failure_with_the_api_code(
    dev_env, db, task_queue, channel, voyager: Voyager
) -> None:
    async with (
        notifyflow_worker(dev_env, db, task_queue, channel),
        Worker(
            voyager.client,
            task_queue=voyager.task_queue,
            workflows=[VoyagerAsksWorkflow, VoyagerLooksUpWorkflow],
        ),
    ):
        bad = NexusNotificationRequest(
            type="user_question_request", conversation_id=2_000_000_000, context={"question": "?"}
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await voyager.client.execute_workflow(
                VoyagerAsksWorkflow.run,
                args=[voyager.endpoint, bad],
                id=f"voyager-{uuid.uuid4().hex[:8]}",
                task_queue=voyager.task_queue,
                execution_timeout=timedelta(seconds=60),
            )
        cause = failed.value.cause
        assert isinstance(cause, NexusOperationError)
        assert "not_found: conversation 2000000000 not found" in str(cause.cause)
        with pytest.raises(WorkflowFailureError) as malformed:
            await voyager.client.execute_workflow(
                VoyagerLooksUpWorkflow.run,
                args=[voyager.endpoint, "NOTIF_0"],
                id=f"voyager-{uuid.uuid4().hex[:8]}",
                task_queue=voyager.task_queue,
                execution_timeout=timedelta(seconds=60),
            )
        assert "malformed_id" in str(malformed.value.cause.cause)  # type: ignore[union-attr]
