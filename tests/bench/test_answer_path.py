"""The bench's answer-path stages, read from a recorded notification history."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.answer_path import STAGES, answer_stages, summarize
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

HISTORIES = Path(__file__).parents[1] / "replay" / "histories"


def _history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / name).read_text())


def _time(history: WorkflowHistory, kind: int, after: int = 0) -> float:
    event = next(e for e in history.events if e.event_type == kind and e.event_id > after)
    return float(event.event_time.ToMicroseconds()) / 1e6


def test_stages_split_the_answer_at_the_history_s_own_times() -> None:
    history = _history("question_answered_free_form.json")
    accepted = next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )
    task_started = max(
        float(e.event_time.ToMicroseconds()) / 1e6
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and e.event_id < accepted
    )
    activity_started = _time(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, accepted)
    completed = _time(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, accepted)
    answered, delivered = task_started - 0.010, activity_started + 0.020

    stages = answer_stages(history, answered, delivered)

    assert stages is not None
    assert list(stages) == list(STAGES)
    assert stages["to_task_started"] == pytest.approx(10.0, abs=0.01)
    assert stages["activity_to_delivered"] == pytest.approx(20.0, abs=0.01)
    assert stages["task"] >= 0 and stages["to_activity_started"] >= 0
    # The stages cover the whole way from the answer to the activity's end, with no gap.
    assert sum(stages.values()) == pytest.approx((completed - answered) * 1000, abs=0.01)


def test_a_notification_not_answered_by_the_update_has_no_stages() -> None:
    history = _history("question_closed_by_operator.json")
    assert answer_stages(history, 0.0, 0.0) is None


def test_summary_gives_each_stage_its_percentiles() -> None:
    rows = [{name: float(i) for name in STAGES} for i in range(1, 21)]
    out = summarize(rows)
    assert out["samples"] == 20
    assert out["task"]["p50"] == pytest.approx(10.5, abs=0.6)
    assert out["task"]["max"] == 20.0
