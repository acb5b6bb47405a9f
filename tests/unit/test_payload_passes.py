"""The SDK's payload passes over activations and completions are skipped only when they cannot
change a payload (no codec, no external storage: notifyflow/payload_passes.py); with a codec,
every payload still goes through it, with the same contexts as without the skip."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import temporalio.bridge.worker as bridge_worker
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.worker import Replayer

from notifyflow import payload_passes, workflow_code_cache
from notifyflow.workflows.notification import NotificationWorkflow

HISTORY = Path(__file__).resolve().parent.parent / "replay" / "histories"


class _Counting(PayloadCodec):
    def __init__(self) -> None:
        self.payloads = 0

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.payloads += len(payloads)
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.payloads += len(payloads)
        return list(payloads)


async def _replay(converter: DataConverter, monkeypatch: pytest.MonkeyPatch) -> int:
    """Replays the happy path; returns how many tree walks the SDK's visitor made."""
    walks = [0]
    real = bridge_worker.CommandAwarePayloadVisitor.visit

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        walks[0] += 1
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(bridge_worker.CommandAwarePayloadVisitor, "visit", counting)
    history = WorkflowHistory.from_json(
        "h", (HISTORY / "question_answered_free_form.json").read_text()
    )
    await Replayer(
        workflows=[NotificationWorkflow],
        data_converter=converter,
        workflow_runner=workflow_code_cache.sandboxed_runner(),
    ).replay_workflow(history)
    return walks[0]


async def test_without_a_codec_no_pass_walks_the_activations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload_passes.install()
    payload_passes.install()  # idempotent: wrapped once
    assert payload_passes.installed()
    assert await _replay(pydantic_data_converter, monkeypatch) == 0


async def test_with_a_codec_every_pass_runs_as_the_sdk_runs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload_passes.install()
    codec = _Counting()
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    walks = await _replay(converter, monkeypatch)
    # Three walks per activation and three per completion, as the SDK makes them.
    assert walks > 0 and walks % 3 == 0
    assert codec.payloads > 0
