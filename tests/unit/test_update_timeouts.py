"""An answer or follow-up whose update the SDK gives up on (its RPC deadline passed while the
workflow's worker was busy) is ``not_ready`` — 503 with Retry-After, safe to send again — not
an unhandled error. Seen under load in the benchmark: the SDK's own deadline can fire before
ours. An update the server refuses only for now is tried again within the same wait."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from notifyflow import starter
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.notification import NotificationStatus
from notifyflow.models.workflow_io import AnswerAccepted, AnswerSource, AnswerSubmission


class _BusyHandle:
    """A workflow handle whose update RPC times out, as the SDK reports it."""

    async def execute_update(self, *_: Any, **__: Any) -> Any:
        raise WorkflowUpdateRPCTimeoutOrCancelledError()


async def test_an_answer_the_sdk_timed_out_is_not_ready() -> None:
    submission = AnswerSubmission(
        notification_id="NOTIF_7", answered_by=1, answer_json="{}", source=AnswerSource.api
    )
    with pytest.raises(NotificationError) as caught:
        await starter._submit(_BusyHandle(), submission)  # type: ignore[arg-type]
    assert caught.value.code is RefusalCode.not_ready
    assert "sending the same answer again is safe" in caught.value.message


class _RefusingHandle:
    """A workflow handle whose server refuses the update ``refusals`` times for now (a burst
    beyond its 10 in-flight updates, or an update dropped before acceptance), then takes it."""

    def __init__(self, status: RPCStatusCode, refusals: int) -> None:
        self.status = status
        self.refusals = refusals
        self.calls = 0

    async def execute_update(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        if self.calls <= self.refusals:
            raise RPCError("limit on number of concurrent in-flight updates", self.status, b"")
        return AnswerAccepted(notification_id="NOTIF_7", status=NotificationStatus.answered)


def _submission() -> AnswerSubmission:
    return AnswerSubmission(
        notification_id="NOTIF_7", answered_by=1, answer_json="{}", source=AnswerSource.api
    )


@pytest.mark.parametrize("status", [RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE])
async def test_an_update_refused_for_now_is_tried_again_within_the_wait(
    status: RPCStatusCode,
) -> None:
    handle = _RefusingHandle(status, refusals=3)
    accepted = await starter._submit(handle, _submission())  # type: ignore[arg-type]
    assert accepted.status is NotificationStatus.answered
    assert handle.calls == 4


async def test_an_update_refused_past_the_wait_is_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(starter, "ANSWER_WAIT", timedelta(seconds=0.3))
    handle = _RefusingHandle(RPCStatusCode.RESOURCE_EXHAUSTED, refusals=1000)
    with pytest.raises(NotificationError) as caught:
        await starter._submit(handle, _submission())  # type: ignore[arg-type]
    assert caught.value.code is RefusalCode.not_ready
    assert 2 <= handle.calls < 20


async def test_an_update_refused_for_good_is_not_retried() -> None:
    handle = _RefusingHandle(RPCStatusCode.PERMISSION_DENIED, refusals=1)
    with pytest.raises(RPCError):
        await starter._submit(handle, _submission())  # type: ignore[arg-type]
    assert handle.calls == 1
