"""Which activities a history ran, regular or local: a regular one is an
ActivityTaskScheduled event, a local one a ``core_local_activity`` marker (its details name the
activity; a failed one carries the failure)."""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

LOCAL_ACTIVITY_MARKER = "core_local_activity"


def _local_activity_type(event: HistoryEvent) -> str | None:
    attrs = event.marker_recorded_event_attributes
    if attrs.marker_name != LOCAL_ACTIVITY_MARKER:
        return None
    data = json.loads(attrs.details["data"].payloads[0].data)
    return str(data["activity_type"])


def activities_run(history: WorkflowHistory) -> list[str]:
    """Every activity in the order it was scheduled (a local one once per attempt recorded)."""
    names: list[str] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            local = _local_activity_type(e)
            if local is not None:
                names.append(local)
    return names


def local_activities(history: WorkflowHistory) -> list[str]:
    return [
        name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and (name := _local_activity_type(e)) is not None
    ]


def failed_activities(history: WorkflowHistory) -> list[str]:
    """The activities that failed for good (a regular one's ActivityTaskFailed; a local one's
    marker with a failure)."""
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    failed: list[str] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed.append(scheduled[e.activity_task_failed_event_attributes.scheduled_event_id])
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            local = _local_activity_type(e)
            if local is not None and e.marker_recorded_event_attributes.HasField("failure"):
                failed.append(local)
    return failed
