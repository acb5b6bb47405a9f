"""The sandbox executes only the workflow modules afresh for each workflow run; everything they
use from notifyflow is passed through (``workflows/deps.py`` for the notification workflow).
A module of ours imported fresh inside the sandbox would cost an execution per workflow run
and, worse, give the workflow class objects other than the activities' and the converter's."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from notifyflow.worker import WORKFLOWS
from notifyflow.workflows.notification import NotificationWorkflow

HISTORY = Path(__file__).parent / "histories" / "question_answered_free_form.json"


class _Recorder(importlib.abc.MetaPathFinder):
    """Records every notifyflow module the import system is asked to find (a passed-through
    module is taken from the host's modules and never asked for)."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "notifyflow" or fullname.startswith("notifyflow."):
            self.asked.add(fullname)
        return None


async def test_only_the_workflow_modules_are_executed_in_the_sandbox() -> None:
    recorder = _Recorder()
    sys.meta_path.insert(0, recorder)
    try:
        replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
        await replayer.replay_workflow(WorkflowHistory.from_json("wf", HISTORY.read_text()))
    finally:
        sys.meta_path.remove(recorder)
    workflow_modules = {w.__module__ for w in WORKFLOWS}
    # The workflow modules and their packages; nothing else of ours.
    assert NotificationWorkflow.__module__ in recorder.asked
    assert recorder.asked - workflow_modules <= {"notifyflow", "notifyflow.workflows"}, sorted(
        recorder.asked - workflow_modules
    )
