"""What a workflow history costs: events, and billable actions as Temporal Cloud counts them.

Counted from the history alone (so queries and rejected updates, which leave no event, are
not included): a start; every activity attempt; every timer; every signal; every accepted
update; every search-attribute or memo upsert but the SDK's own ``TemporalChangeVersion`` one
(a ``workflow.patched`` records it; exempt from Action counting, docs.temporal.io/evaluate/
cloud/actions, "Search Attribute upsert requested"); every child workflow, external signal or
Nexus operation; and local activities once per workflow task that ran any.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

_ONE_EACH = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    # A Nexus operation the workflow schedules (a Voyager caller's request).
    EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED,
}


# What a patch upserts alongside its marker (sdk-core's VERSION_SEARCH_ATTR_KEY).
CHANGE_VERSION = "TemporalChangeVersion"


@dataclass(frozen=True)
class HistoryCost:
    events: int
    actions: int
    by_kind: dict[str, int]


def history_cost(history: WorkflowHistory) -> HistoryCost:
    actions = 0
    kinds: Counter[str] = Counter()
    local_batch = False
    for event in history.events:
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
        kinds[kind] += 1
        if event.event_type in _ONE_EACH:
            actions += 1
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {CHANGE_VERSION}:
                actions += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Every attempt is billed; the started event carries the attempt number.
            actions += max(event.activity_task_started_event_attributes.attempt, 1)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            if event.marker_recorded_event_attributes.marker_name == "core_local_activity":
                local_batch = True
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            if local_batch:
                actions += 1
            local_batch = False
    if local_batch:
        actions += 1
    return HistoryCost(events=len(history.events), actions=actions, by_kind=dict(kinds))
