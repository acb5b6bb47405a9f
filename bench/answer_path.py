"""Where an answer's time goes between the admin's click and the customer's message.

Read from the notification's history (the server stamps each event) and the bench's own two
clocks (the answer's send, the fake Twilio's receipt of the customer's message), all on this
machine's one wall clock. Under load the total alone cannot say whether the answer waited for
the server, for a workflow-task slot or for the activity's own work; these stages can."""

from collections.abc import Iterable
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from bench.report import summary

STAGES = (
    # the update's send → the worker takes the workflow task that accepts it
    "to_task_started",
    # that workflow task, worker side (activation, completion, the update's acceptance)
    "task",
    # the task's completion → the delivery activity starts (eager dispatch, or a poll)
    "to_activity_started",
    # the activity's own work up to the customer's message (load, localize, claim, send)
    "activity_to_delivered",
    # the customer's message → the activity's completion (record, closure notices)
    "delivered_to_completed",
)


def _seconds(event: Any) -> float:
    return float(event.event_time.ToMicroseconds()) / 1e6


def answer_stages(
    history: WorkflowHistory, answered: float, delivered: float, activity: str = "deliver_answer"
) -> dict[str, float] | None:
    """The stages in milliseconds, or None when the history has no accepted update followed by
    the delivery activity (an answer taken another way)."""
    task_started = task_completed = None
    accepted = False
    scheduled_id = None
    started = completed = None
    for event in history.events:
        kind = event.event_type
        if not accepted:
            if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                task_started = _seconds(event)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                task_completed = _seconds(event)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                accepted = True
        elif scheduled_id is None:
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == activity:
                    scheduled_id = event.event_id
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            if event.activity_task_started_event_attributes.scheduled_event_id == scheduled_id:
                started = _seconds(event)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            if event.activity_task_completed_event_attributes.scheduled_event_id == scheduled_id:
                completed = _seconds(event)
                break
    if task_started is None or task_completed is None or started is None or completed is None:
        return None
    points = (answered, task_started, task_completed, started, delivered, completed)
    return {name: (points[i + 1] - points[i]) * 1000 for i, name in enumerate(STAGES)}


def summarize(stages: Iterable[dict[str, float]]) -> dict[str, Any]:
    rows = list(stages)
    return {"samples": len(rows), **{name: summary([r[name] for r in rows]) for name in STAGES}}
