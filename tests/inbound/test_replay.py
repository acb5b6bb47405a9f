"""Recorded histories of the inbound workflows replay against today's code, so a
non-deterministic change to AdminReplyWorkflow or FallbackDeliveryWorkflow fails CI.

Re-record on purpose only: ``NOTIFYFLOW_RECORD_INBOUND_HISTORIES=1 pytest tests/inbound``."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from notifyflow import workflow_code_cache
from notifyflow.workflows.admin_reply import AdminReplyWorkflow
from notifyflow.workflows.fallback import FallbackDeliveryWorkflow
from tests.inbound.conftest import HISTORIES
from tests.replay import stamp

RECORDED = sorted(p for p in HISTORIES.glob("*.json") if p.name != stamp.STAMP)


def test_every_inbound_path_has_a_recorded_history() -> None:
    assert {p.stem for p in RECORDED} >= {
        "admin_reply_accepted",
        "admin_reply_ambiguous",
        "fallback_template",
        "fallback_delivery_failed",
    }


def test_the_histories_are_not_older_than_the_workflow_code() -> None:
    reason = stamp.stale_reason(HISTORIES)
    assert reason is None, reason


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[AdminReplyWorkflow, FallbackDeliveryWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_code_cache.sandboxed_runner(),
    )
    await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
