"""Skip the SDK's payload passes over each workflow activation when they cannot change a thing.

For every activation the worker receives, the SDK walks the whole protobuf tree three times
(decode the external-storage references, retrieve externally stored payloads, run the payload
codec), and three times again over every completion it sends (codec, external store, reference
encode) — ``temporalio.bridge.worker.decode_activation`` / ``encode_completion``. Each walk
asks the workflow for the serialization context of every payload sequence it meets, and builds
a data converter for that context when it is an activity's. With no payload codec and no
external storage configured, every one of those calls returns its payloads unchanged: the
walks are pure cost (a sixth of the worker's workflow-side CPU, ``python -m bench.replay``).

:func:`install` wraps both functions so that they return at once when the data converter they
are given has neither a codec nor external storage, and run the SDK's passes unchanged
otherwise (a deployment that adds a codec or external storage gets exactly the SDK's
behaviour). What is lost without the passes is only the SDK's error for a payload that points
to external storage on a worker configured without it; decoding such a payload fails anyway.
The wrapped functions are looked up by the SDK at each call, so the wrap applies to every
worker and replayer of the process; it is idempotent.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import temporalio.bridge.worker as bridge_worker
from temporalio.converter import DataConverter
from temporalio.converter._extstore import StorageOperationMetrics

_WRAPPED = "__notifyflow_skips_noop_passes__"

Pass = Callable[..., Awaitable[StorageOperationMetrics]]


def has_effect(data_converter: DataConverter) -> bool:
    """Whether the SDK's passes can change a payload: a codec or external storage is set."""
    return data_converter.payload_codec is not None or data_converter.external_storage is not None


def _skipping(original: Pass) -> Pass:
    @functools.wraps(original)
    async def wrapper(
        message: Any, data_converter: DataConverter, *args: Any, **kwargs: Any
    ) -> StorageOperationMetrics:
        if not has_effect(data_converter):
            return StorageOperationMetrics()
        return await original(message, data_converter, *args, **kwargs)

    setattr(wrapper, _WRAPPED, original)
    return wrapper


def install() -> None:
    for name in ("decode_activation", "encode_completion"):
        current = getattr(bridge_worker, name)
        if not hasattr(current, _WRAPPED):
            setattr(bridge_worker, name, _skipping(current))


def installed() -> bool:
    return all(
        hasattr(getattr(bridge_worker, name), _WRAPPED)
        for name in ("decode_activation", "encode_completion")
    )
