"""Recorded histories of every path replay against today's workflow code (CI catches a
non-deterministic change), the happy paths stay within their action and event budget, the
failure paths really hold failed activities, and the histories are not older than the workflow
code they guard (tests/replay/stamp.py)."""

# No `from __future__ import annotations`: the subclass below overrides run(), whose
# parameters the SDK compares with the (evaluated) annotations of NotificationWorkflow.__init__.

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

# This module defines a workflow (the subclass below), so the sandbox executes it: what it uses
# from notifyflow is passed through, the same objects the workflow code sees.
with workflow.unsafe.imports_passed_through():
    from notifyflow import payload_passes, workflow_code_cache
    from notifyflow.history_costs import history_cost
    from notifyflow.models.workflow_io import NotificationOutcome, NotificationWorkflowInput
    from notifyflow.workflows.correction import CorrectionWorkflow
    from notifyflow.workflows.notification import NotificationWorkflow
    from tests.fixtures.histories import activities_run
    from tests.replay import stamp

HERE = Path(__file__).parent / "histories"
HISTORIES = sorted(p for p in HERE.glob("*.json") if p.name != stamp.STAMP)
# Histories whose activity fails for good, and what the workflow does about it.
FAILED_ACTIVITY = {
    "question_fan_out_gave_up": ("open_notification", "closed"),
    "question_delivery_gave_up": ("deliver_answer", "delivery_failed"),
    "question_reminder_failed_then_answered": ("follow_up", "delivered"),
}


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_every_path_has_a_recorded_history() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "question_answered_free_form",
        "support_answered_by_template",
        "support_reminded_escalated_expired",
        "question_refused_then_answered_by_signal",
        "question_closed_by_operator",
        "question_answered_with_start",
        "question_corrected",
        "question_answered_with_csat",
        "question_open_retried_as_activity",
        "question_closed_while_fan_out_retried",
        *FAILED_ACTIVITY,
    } <= names


def _scheduled(history: WorkflowHistory) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def _markers(history: WorkflowHistory) -> list[tuple[str, bytes]]:
    return [
        (
            e.marker_recorded_event_attributes.marker_name,
            e.marker_recorded_event_attributes.SerializeToString(),
        )
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


def _local_activities(history: WorkflowHistory) -> list[tuple[str, str]]:
    """(activity type, failure message or "") of each local activity's marker."""
    return [(name, failure) for name, local, failure in activities_run(history) if local]


def test_the_csat_history_asks_after_delivery_behind_its_patch() -> None:
    history = _load(HERE / "question_answered_with_csat.json")
    assert _scheduled(history) == ["deliver_answer", "ask_satisfaction"]
    patches = [data for name, data in _markers(history) if name == "core_patch"]
    assert len(patches) == 2 and b"csat-ask" in patches[1], patches


def test_the_happy_path_opens_in_a_local_activity_behind_its_patch() -> None:
    """The open's first attempt runs in the first workflow task: its marker, no activity."""
    history = _load(HERE / "question_answered_free_form.json")
    assert _local_activities(history) == [("open_notification", "")]
    assert _scheduled(history) == ["deliver_answer"]
    (patch,) = [data for name, data in _markers(history) if name == "core_patch"]
    assert b"local-open" in patch


def test_a_retryable_local_open_failure_hands_over_to_the_activity() -> None:
    history = _load(HERE / "question_open_retried_as_activity.json")
    ((activity, failure),) = _local_activities(history)
    assert activity == "open_notification" and "Internal error" in failure
    assert _scheduled(history) == ["open_notification", "deliver_answer"]
    assert _outcome(history) == "delivered"


def test_a_close_during_the_open_cancels_it_behind_its_patch() -> None:
    """The operator's close while the open activity retries: the activity is cancelled, the
    notification closed, nothing delivered."""
    history = _load(HERE / "question_closed_while_fan_out_retried.json")
    assert _scheduled(history) == ["open_notification", "finish_notification"]
    assert any(
        e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED for e in history.events
    )
    patches = [data for name, data in _markers(history) if name == "core_patch"]
    assert any(b"close-during-open" in p for p in patches), patches
    assert _outcome(history) == "closed"


def test_the_patch_version_attribute_costs_no_action() -> None:
    """The patch's own TemporalChangeVersion upsert is an event but not an Action; the
    status upsert at the end is both."""
    cost = history_cost(_load(HERE / "question_answered_free_form.json"))
    assert cost.by_kind["upsert_workflow_search_attributes"] == 2
    assert cost.actions == 6, cost.by_kind


def test_the_histories_are_not_older_than_the_workflow_code() -> None:
    """Recorded on today's workflows/*.py (sha256 in histories/recorded.json)."""
    reason = stamp.stale_reason(HERE)
    assert reason is None, reason


def test_a_workflow_change_makes_the_histories_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.json").write_text("{}")
    stamp.write_stamp(tmp_path, "record")
    assert stamp.stale_reason(tmp_path) is None
    monkeypatch.setattr(stamp, "workflow_digest", lambda: "0" * 64)
    assert "re-record with `record`" in (stamp.stale_reason(tmp_path) or "")


@pytest.mark.parametrize("name", sorted(FAILED_ACTIVITY))
def test_failure_histories_hold_a_failed_activity(name: str) -> None:
    activity, status = FAILED_ACTIVITY[name]
    history = _load(HERE / f"{name}.json")
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    failed = [
        scheduled[e.activity_task_failed_event_attributes.scheduled_event_id]
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    ]
    # The open's first attempt is local: its failure is on its marker.
    failed += [name for name, failure in _local_activities(history) if failure]
    assert activity in failed
    assert _outcome(history) == status


def _outcome(history: WorkflowHistory) -> str:
    (completed,) = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    ]
    result = completed.workflow_execution_completed_event_attributes.result.payloads[0].data
    status: str = json.loads(result)["status"]
    return status


# Recorded on the workflow code of earlier releases — before issue 11 (commit eec5dbf), before
# issue 15 (commit ff0026c), before issue 17's third step (commit 41864bd), before the local
# open (commit c915fac), before a close could cancel the open (commit 00761ea; with one history
# of a close arriving while the open retries, recorded on that code): workflows started then
# may still be running, so they must keep replaying (workflow.patched); never re-recorded.
OLDER = sorted(HERE.glob("before_*/*.json"))


@pytest.mark.parametrize(
    "path",
    HISTORIES + OLDER,
    ids=[p.stem for p in HISTORIES] + [f"{p.parent.name}/{p.stem}" for p in OLDER],
)
async def test_history_replays(path: Path) -> None:
    # With the worker's runner and payload passes: what replays here is what the worker replays.
    payload_passes.install()
    replayer = Replayer(
        workflows=[NotificationWorkflow, CorrectionWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_code_cache.sandboxed_runner(),
    )
    await replayer.replay_workflow(_load(path))


@pytest.mark.parametrize("name", ["question_answered_free_form", "support_answered_by_template"])
def test_happy_path_costs_at_most_6_actions_and_30_events(name: str) -> None:
    cost = history_cost(_load(HERE / f"{name}.json"))
    assert cost.actions <= 6, cost.by_kind
    assert cost.events <= 30, cost.by_kind


def test_a_correction_costs_2_actions() -> None:
    """Its own workflow: the start and one activity (DESIGN §10 corrections)."""
    cost = history_cost(_load(HERE / "question_corrected.json"))
    assert cost.actions == 2, cost.by_kind
    assert cost.events <= 12, cost.by_kind


@workflow.defn(name="NotificationWorkflow")
class _IncompatibleNotificationWorkflow(NotificationWorkflow):
    """Today's workflow with one step added before the fan-out: an incompatible change."""

    @workflow.run
    async def run(self, input: NotificationWorkflowInput) -> NotificationOutcome:
        await workflow.sleep(1)
        return await super().run(input)


async def test_an_incompatible_change_is_caught_by_replay() -> None:
    replayer = Replayer(
        workflows=[_IncompatibleNotificationWorkflow], data_converter=pydantic_data_converter
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(_load(HERE / "question_answered_free_form.json"))
