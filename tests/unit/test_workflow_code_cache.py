"""The sandbox imports a workflow's module afresh for every workflow run; the worker compiles
it once per process (notifyflow/workflow_code_cache.py), wherever bytecode is not written."""

from __future__ import annotations

import importlib._bootstrap_external as bootstrap
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker, settings_for
from tests.workflows.helpers import result, until

from notifyflow import starter, workflow_code_cache
from notifyflow.workflows.notification import NotificationWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "replay" / "histories"

WORKFLOW_MODULE = "notifyflow.workflows.notification"


async def test_many_notifications_compile_the_workflow_module_once(
    dev_env,
    db,
    task_queue,
    channel: FakeTwilioChannel,
    shop_factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As under PYTHONDONTWRITEBYTECODE (the Dockerfile's setting): no bytecode is written.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    loads: list[str] = []
    real = bootstrap.SourceLoader.get_code

    def counting(self: Any, fullname: str) -> Any:
        # The sandbox's imports (the SDK also reads the module once at worker start, to derive
        # a build id: not a workflow run).
        if fullname == WORKFLOW_MODULE and workflow.unsafe.in_sandbox():
            loads.append(fullname)
        return real(self, fullname)

    monkeypatch.setattr(bootstrap.SourceLoader, "get_code", counting)
    strings_before = workflow_code_cache._compiled.cache_info()
    shop = await shop_factory()
    settings = settings_for(task_queue)
    async with running_worker(dev_env.client, db, task_queue, channel):
        opened = []
        for n in range(3):
            view = await starter.request_notification(
                dev_env.client,
                db,
                type="user_question_request",
                conversation_id=shop.conversation_id,
                context={"question": f"Question {n}?"},
                settings=settings,
            )
            opened.append(view.notification_id)
        # Three workflow runs, three sandboxes: every admin got every request.
        await until(lambda: all(len(channel.to(a.phone)) == 3 for a in shop.admins))
        # Nothing is left running for the tests after this one.
        for public in opened:
            await starter.close_notification(dev_env.client, db, public, reason="test over")
            await result(dev_env.client, public)
    # Read from source (or a .pyc) at most once in this process, not once per workflow run.
    assert len(loads) <= 1
    assert workflow_code_cache.compiled_modules() >= 1
    # The worker's sandboxes ran the SDK's code strings compiled once: dozens of runs of a
    # handful of strings (the SDK's own runner compiles each string at each run).
    strings = workflow_code_cache._compiled.cache_info()
    assert strings.hits - strings_before.hits >= 30
    assert strings.currsize <= 12


async def test_replays_compile_the_sandboxs_code_strings_once() -> None:
    history = WorkflowHistory.from_json(
        "h", (HISTORIES / "question_answered_free_form.json").read_text()
    )
    replayer = Replayer(
        workflows=[NotificationWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_code_cache.sandboxed_runner(),
    )
    await replayer.replay_workflow(history)
    before = workflow_code_cache._compiled.cache_info()
    for _ in range(3):
        await replayer.replay_workflow(history)
    after = workflow_code_cache._compiled.cache_info()
    # Three more runs compiled nothing new, and each ran many strings (activations, payloads).
    assert after.misses == before.misses
    assert after.hits - before.hits >= 3 * 20


def test_only_the_workflows_modules_are_kept_compiled() -> None:
    from notifyflow.worker import WORKFLOWS

    workflow_code_cache.install(WORKFLOWS)
    workflow_code_cache.install(WORKFLOWS)
    finders = [f for f in sys.meta_path if isinstance(f, workflow_code_cache.SandboxCodeFinder)]
    assert len(finders) == 1
    assert {"notifyflow", "notifyflow.workflows", WORKFLOW_MODULE} <= finders[0].modules
    # Any other module is Python's business, as without the finder.
    assert finders[0].find_spec("notifyflow.starter", None) is None
