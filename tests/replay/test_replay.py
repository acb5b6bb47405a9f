"""Recorded histories of every path replay against today's workflow code (CI catches a
non-deterministic change), and the happy paths stay within their action and event budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from notifyflow.history_costs import history_cost
from notifyflow.models.workflow_io import NotificationOutcome, NotificationWorkflowInput
from notifyflow.workflows.notification import NotificationWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


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
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=[NotificationWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(_load(path))


@pytest.mark.parametrize("name", ["question_answered_free_form", "support_answered_by_template"])
def test_happy_path_costs_at_most_6_actions_and_30_events(name: str) -> None:
    cost = history_cost(_load(Path(__file__).parent / "histories" / f"{name}.json"))
    assert cost.actions <= 6, cost.by_kind
    assert cost.events <= 30, cost.by_kind


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
        await replayer.replay_workflow(
            _load(Path(__file__).parent / "histories" / "question_answered_free_form.json")
        )
