"""An answer or follow-up whose update the SDK gives up on (its RPC deadline passed while the
workflow's worker was busy) is ``not_ready`` — 503 with Retry-After, safe to send again — not
an unhandled error. Seen under load in the benchmark: the SDK's own deadline can fire before
ours."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

from notifyflow import starter
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.workflow_io import AnswerSource, AnswerSubmission


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
