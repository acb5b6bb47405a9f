"""The sandbox imports a workflow's module afresh for every workflow run; the worker compiles
it once per process (notifyflow/workflow_code_cache.py), wherever bytecode is not written."""

from __future__ import annotations

import dataclasses
import importlib._bootstrap_external as bootstrap
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
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
    strings_before = workflow_code_cache.sandbox_string_stats()
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
    # handful of strings (the SDK's own runner compiles each string at each run): about nine
    # per notification opened and closed here.
    strings = workflow_code_cache.sandbox_string_stats()
    assert strings.hits - strings_before.hits >= 3 * 7
    # A handful of distinct strings: one per workflow class the worker checks at its start,
    # and the SDK's few constant ones.
    from notifyflow.worker import WORKFLOWS

    assert strings.misses - strings_before.misses <= len(WORKFLOWS) + 4


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
    before = workflow_code_cache.sandbox_string_stats()
    for _ in range(3):
        await replayer.replay_workflow(history)
    after = workflow_code_cache.sandbox_string_stats()
    # Three more runs compiled nothing new, and each ran its strings (one per activation —
    # five or more in this history — and the creation of its sandbox) compiled.
    assert after.misses == before.misses
    assert after.hits - before.hits >= 3 * 5


def test_only_the_workflows_modules_are_kept_compiled() -> None:
    from notifyflow.worker import WORKFLOWS

    workflow_code_cache.install(WORKFLOWS)
    workflow_code_cache.install(WORKFLOWS)
    finders = [f for f in sys.meta_path if isinstance(f, workflow_code_cache.SandboxCodeFinder)]
    assert len(finders) == 1
    assert {"notifyflow", "notifyflow.workflows", WORKFLOW_MODULE} <= finders[0].modules
    # Any other module is Python's business, as without the finder.
    assert finders[0].find_spec("notifyflow.starter", None) is None


class _ContextRecorder(PayloadCodec, WithSerializationContext):
    """Changes no payload; notes the serialization context of each it encodes or decodes."""

    def __init__(self, seen: list[str], context: SerializationContext | None = None) -> None:
        self.seen = seen
        self.context = context

    def with_context(self, context: SerializationContext) -> _ContextRecorder:
        return _ContextRecorder(self.seen, context)

    def _note(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.seen.extend(repr(self.context) for _ in payloads)
        return list(payloads)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self._note(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self._note(payloads)


async def test_payloads_get_the_serialization_context_the_sdks_runner_gives_them() -> None:
    history = WorkflowHistory.from_json(
        "h", (HISTORIES / "question_answered_free_form.json").read_text()
    )
    seen: dict[str, list[str]] = {}
    for name, runner in (
        ("sdk", SandboxedWorkflowRunner()),
        ("ours", workflow_code_cache.sandboxed_runner()),
    ):
        seen[name] = []
        converter = dataclasses.replace(
            pydantic_data_converter, payload_codec=_ContextRecorder(seen[name])
        )
        await Replayer(
            workflows=[NotificationWorkflow], data_converter=converter, workflow_runner=runner
        ).replay_workflow(history)
    # The workflow's own context and each activity's (its type, its id) in the same order.
    assert seen["ours"] == seen["sdk"]
    assert any("ActivitySerializationContext" in c for c in seen["sdk"])
    assert any("WorkflowSerializationContext" in c for c in seen["sdk"])
